"""The bulk job's defaults, in a module light enough for ``imagetagger tag --help``.

The CLI shows them and :mod:`imagetagger.bulk.pipeline` applies them; the CLI must not
import the pipeline (it pulls in pyarrow and NumPy) just to print a default.
"""

from __future__ import annotations

#: Rows per model call; LiteRT runs them image by image, TensorFlow as one batch.
DEFAULT_BATCH_SIZE = 16
#: Object-store memory the job may fill (images read ahead, crops in flight). Ray
#: Data's own default is a share of the whole object store, gigabytes on any machine,
#: which it fills when reading outruns the model: the peak then grows with the job.
DEFAULT_OBJECT_STORE_BUDGET = 512 * 2**20
