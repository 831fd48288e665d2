"""Constants shared by the data, the model, training and evaluation (each defined here only)."""

# Label of void pixels (PASCAL VOC's object borders; padding and unlabelled images):
# no loss, not counted by the metrics.
IGNORE = 255
# A pixel is foreground when its foreground probability exceeds this.
THRESHOLD = 0.5
# The encoder's total stride (five 2x2 max-pools): image sides must be multiples of it.
STRIDE = 32
# The splits of every dataset (pairs and groups).
SPLITS = ("train", "val", "test")
# config.data.dataset values.
DATASETS = ("synthetic", "voc", "folder", "tfds")
