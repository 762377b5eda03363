"""TensorFlow kernels that reach outside the tensors: shared by TFLite Flex ops and SavedModel graphs.

A graph that calls these does more than compute: it runs Python from the process's registry
(`PyFunc`, `EagerPyFunc`), reads, lists or writes files (`ReadFile`, `WriteFile`, `MatchingFiles`,
`Save`/`Restore` with a path the graph chooses), or loads native code. Names are TensorFlow op type
names (tensorflow/core/ops/*.cc).
"""

from __future__ import annotations

PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
FILE_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "DeleteFile", "WholeFileReader", "WholeFileReaderV2",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
    "ShardedFilename", "ShardedFilespec", "ImmutableConst", "LoadAndRemapMatrix", "TextLineReader",
    "TextLineReaderV2", "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "TFRecordReader",
    "TFRecordReaderV2", "TextLineDataset", "TFRecordDataset", "TFRecordDatasetV2", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "WriteSummary", "CreateSummaryFileWriter", "SnapshotDataset",
    "SnapshotDatasetV2", "SaveDataset", "SaveDatasetV2", "LoadDataset", "DatasetToTFRecord",
    "WriteAudioSummary", "WriteImageSummary", "WriteScalarSummary", "WriteHistogramSummary",
    "DebugIdentityV2", "DebugIdentityV3", "RecordInput", "CSVDataset", "CSVDatasetV2",
})
LIBRARY_OPS = frozenset({"LoadLibrary", "LoadOpLibrary"})
