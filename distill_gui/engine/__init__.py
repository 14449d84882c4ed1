"""The Qt-free distillation engine.

Import-light on purpose (the GUI imports this package before its window shows): nothing here
imports torch. Modules: ``events`` (event dataclasses + Control), ``device`` (device, precision,
memory), ``models`` (resolve / inspect / load / derive models, the tokenizer check), ``data``
(rows, chat templates, masks, batches, preview), ``losses`` (the distillation losses),
``trainer`` (``train`` and ``compute_batch_loss``), ``checkpoint``, ``optim``, ``planner``
(``plan_memory``), ``tiny`` (offline tiny models for tests and the demo).
"""
