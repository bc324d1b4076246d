"""Starting a run from a file: validate and plan it (``spec/``), claim its folder, then
hand the plan to the supervisor in this process, in an exec'd lean process, or
detached (``topo up -d``). The one place where the spec layer meets the supervisor."""
