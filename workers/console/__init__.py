"""`workers console`: the operators' web console and its JSON API (SPEC.md, "The console")."""
