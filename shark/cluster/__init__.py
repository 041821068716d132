"""The Ray adapter layer: starting/joining a Ray cluster. The only place in `shark` that imports ray (besides the
actors and the coordinator that sit on top of it)."""

from shark.cluster.ray_runtime import RayHandle, node_ip, start_ray

__all__ = ["RayHandle", "node_ip", "start_ray"]
