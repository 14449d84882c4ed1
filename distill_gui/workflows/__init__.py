"""Workflows that span the layers below: they join engine/, export/ and ollama/, which never import each other.

- ``publish``: export -> Modelfile -> register into Ollama -> verify with a probe chat (CLI and Export page).
- ``control``: the CE control run next to a run, and the report that shows it.
- ``demo`` (+ ``demo_corpus``, ``tiny``): the offline demo, on models it builds itself.
"""
