"""Students: small fast models distilled from a teacher's materials, one ``--arch`` each.

Every student is a ``students.base.Student`` with a typed config, returning ``distill.modeling.ModelOutput``.
"""

from students.base import Student
from students.bilstm import BiLSTM, BiLSTMConfig
from students.cnn import CNNConfig, TextCNN
from students.transformer import TransformerConfig, TransformerStudent

# --arch name -> (config dataclass, module class)
ARCHS: dict[str, tuple[type, type[Student]]] = {
    "cnn": (CNNConfig, TextCNN),
    "bilstm": (BiLSTMConfig, BiLSTM),
    "transformer": (TransformerConfig, TransformerStudent),
}

__all__ = ["ARCHS", "BiLSTM", "BiLSTMConfig", "CNNConfig", "Student", "TextCNN", "TransformerConfig", "TransformerStudent"]
