"""A local cluster: every process of one topology started, supervised and stopped on this
machine (``qwc cluster up``, ``qwc demo``).

``cluster_plan.py`` is pure (the topology and what to do when a process exits),
``local.py`` starts ``qwc`` processes of one data directory, ``cluster_up.py`` supervises
them and tells how to reach the manager's page.
"""

from workers.localcluster.cluster_plan import ProcessSpec, member_identities, on_exit, topology
from workers.localcluster.cluster_up import Supervisor, local_tokens, page_url
from workers.localcluster.local import LocalProcesses, fast_timings_env

__all__ = [
    "LocalProcesses",
    "ProcessSpec",
    "Supervisor",
    "fast_timings_env",
    "local_tokens",
    "member_identities",
    "on_exit",
    "page_url",
    "topology",
]
