"""distill: knowledge distillation from BERT-family teachers into small fast students.

Core package. ``teachers``, ``students`` and ``benchmarks`` import from here; this package
never imports them at module level.
"""

__version__ = "0.1.0"
