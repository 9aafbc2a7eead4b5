"""Where agent attempts, hooks and test commands run: the bubblewrap sandbox (:mod:`.sandbox`) and its resource
limits (:mod:`.cgroups`)."""
