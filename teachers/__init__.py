"""Teachers: BERT-family encoders from transformers, wrapped in distill's output contract."""

from teachers.hf import DEFAULT_TEACHER, HFTeacher, load_teacher, resolve_teacher

__all__ = ["DEFAULT_TEACHER", "HFTeacher", "load_teacher", "resolve_teacher"]
