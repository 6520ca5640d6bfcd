"""Students: small fast models distilled from a teacher's materials, one ``--arch`` each.

Every student is a ``students.base.Student`` with a typed config, returning ``distill.modeling.ModelOutput``.
"""

from students import bilstm, cnn, transformer
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

# --arch name -> its Optuna search space (plain data: {name: {"low", "high"[, "log"]} or {"choices"}})
SEARCH_SPACES: dict[str, dict] = {"cnn": cnn.SEARCH_SPACE, "bilstm": bilstm.SEARCH_SPACE, "transformer": transformer.SEARCH_SPACE}

__all__ = ["ARCHS", "SEARCH_SPACES", "BiLSTM", "BiLSTMConfig", "CNNConfig", "Student", "TextCNN", "TransformerConfig", "TransformerStudent"]
