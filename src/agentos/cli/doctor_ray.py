"""``agentos doctor``'s cluster checks (``runner.kind: ray``): reachable, its nodes, who can run each agent,
and the same agentos and Ray versions everywhere. Nothing is checked (no line) with ``runner.kind: local``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentos.cli.doctor import Check

if TYPE_CHECKING:
    from agentos.config import Config

__all__ = ["check_runner"]

_VERSIONS_S = 30.0


def check_runner(cfg: Config) -> list[Check]:
    runner = cfg.runner
    if runner.kind == "local":
        return []
    try:
        import ray
    except ImportError:
        return [Check("ray", "error", "runner.kind is ray but ray is not installed", "pip install 'agentos[ray]'")]
    from agentos.runners.port import RunnerUnavailable
    from agentos.runners.ray_runner import connect

    try:
        connect(runner)
    except RunnerUnavailable as exc:
        fix = "start the head (`ray start --head`) or fix runner.address; docs/scale-out.md"
        return [Check("ray", "error", str(exc), fix)]
    try:
        return _cluster_checks(cfg, ray)
    finally:
        ray.shutdown()


def _cluster_checks(cfg: Config, ray: Any) -> list[Check]:
    import agentos

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    workers = [n for n in nodes if n["Resources"].get("agentos", 0) >= 1]
    checks = [
        Check(
            "ray",
            "ok" if workers else "error",
            f"{cfg.runner.address}: {len(nodes)} node(s) alive, {len(workers)} offering the `agentos` resource",
            "" if workers else "start worker nodes with --resources='{\"agentos\": 2}' (docs/scale-out.md)",
        )
    ]
    for name, agent in cfg.agents.items():
        need = {"agentos": 1.0, **agent.ray_resources}
        fit = [n for n in workers if all(n["Resources"].get(k, 0) >= v for k, v in need.items())]
        detail = f"{len(fit)} node(s) offer {need}"
        fix = "" if fit else f"give a node with the {agent.kind} CLI logged in the resources {need}"
        checks.append(Check(f"ray:agent:{name}", "ok" if fit else "error", detail, fix))
    versions = _node_versions(ray, workers)
    skew = {node: v for node, v in versions.items() if v != (agentos.__version__, ray.__version__)}
    if skew:
        seen = "; ".join(f"{node[:12]}: agentos {a}, ray {r}" for node, (a, r) in skew.items())
        want = f"agentos {agentos.__version__}, ray {ray.__version__}"
        checks.append(
            Check("ray:versions", "error", f"version skew with this daemon ({want}): {seen}", f"install {want}")
        )
    else:
        checks.append(
            Check("ray:versions", "ok", f"agentos {agentos.__version__}, ray {ray.__version__} on every node")
        )
    return checks


def _versions() -> tuple[str, str]:
    """On a node: its agentos (``-``: none importable) and Ray versions."""
    import ray

    try:
        import agentos
    except ImportError:
        return "-", ray.__version__
    return agentos.__version__, ray.__version__


def _node_versions(ray: Any, nodes: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Each node's agentos and Ray version, asked of a task pinned to it (one that cannot import agentos: "-")."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    versions = ray.remote(num_cpus=0)(_versions)
    refs = {
        n["NodeID"]: versions.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote()
        for n in nodes
    }
    found: dict[str, tuple[str, str]] = {}
    for node, ref in refs.items():
        try:
            found[node] = tuple(ray.get(ref, timeout=_VERSIONS_S))
        except Exception as exc:
            found[node] = (f"unknown ({type(exc).__name__})", "?")
    return found
