"""The Qt-free distillation engine (docs/architecture.md has the whole picture).

Import-light on purpose (the GUI imports this package before its window shows): nothing here imports
torch. ``trainer`` (``train``: the loop; ``student_loss``: one micro-batch), ``data`` (rows, chat templates,
masks, batches), ``device`` (device, precision, memory), ``optim``, ``checkpoint`` (what a checkpoint holds;
which ones count is ``distill_gui.runfolder``), ``planner`` (``plan_memory``), and the sub-packages
``models/`` (find, inspect, load, derive; the forward pass the losses use), ``losses/`` (the fused, chunked
divergences and their float64 reference), ``teacher/`` (the kinds of teacher behind one interface, and the
phases that answer prompts or cache the teacher's top-k), ``evaluation/`` (scores, the run report).
"""
