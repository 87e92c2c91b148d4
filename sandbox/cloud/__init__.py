"""The Bitbucket Cloud sandbox: its REST API (:mod:`.api`) and its JSON shapes (:mod:`.objects`)."""
