"""What topo shows a reader: ``graph``, ``explain`` and ``schema`` from the file alone,
``ps`` and ``logs`` of a run. Views read the spec layer and run folders; nothing below
imports them."""
