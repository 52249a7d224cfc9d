"""deploy/smoke's parts: the project's image and compose.yaml run for real on a private
Docker engine of this host, with host networking only (docs/operations.md, "Smoke run").

- :mod:`.files`: what the run writes (its ``.env``, compose.yaml's copy, the override,
  pip's build secret), pure functions of their inputs;
- :mod:`.host`: commands, packages, free ports, the host's pip settings;
- :mod:`.engine`: the private ``dockerd``, the local base images, the project's image;
- :mod:`.compose`: ``docker-compose`` and what its containers report;
- :mod:`.checks`: the report, start-up (order, health) and the manager;
- :mod:`.takeover`: SIGKILL of a node, its jobs taken over and fired by the others;
- :mod:`.restart`: clean stops, and a restart that keeps the data;
- :mod:`.main`: the command line, the order of the steps and the summary.

Standard library only: an operator runs it with the host's ``python3``.
"""

__all__: list[str] = []
