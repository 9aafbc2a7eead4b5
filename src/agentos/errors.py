"""The root of agentos's exceptions. Each subsystem hangs its own tree from here.

AgentosError
 ├── ConfigError            config.py       (a bad config file; one message per problem)
 ├── StateError             state_model.py  (CorruptState, SchemaTooNew, AlreadyRunning; raised by store.py)
 ├── ForgeError             forge/base.py   (NotFound; GitHubError → RateLimited)
 ├── WorkspaceError         gitutil.py      (a git operation failed; PushRejected, HookFailed in _worktree.py)
 └── ControlError           control/        (a bad request, a daemon that is not running)
"""


class AgentosError(Exception):
    """Anything agentos raises on purpose."""


class ControlError(AgentosError):
    """A control request that cannot be done: unknown job, bad argument, daemon not running."""
