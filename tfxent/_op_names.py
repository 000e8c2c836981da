"""The type names of tfxent's custom ops, defined once for the wrappers, the gradient
registrations, the parity runner, the benchmark and the tests."""

PREFIX = "Tfxent"
DENSE = "TfxentSoftmaxXent"
DENSE_GRAD = "TfxentSoftmaxXentGrad"
SPARSE = "TfxentSparseSoftmaxXent"
SPARSE_GRAD = "TfxentSparseSoftmaxXentGrad"
ALL = (DENSE, DENSE_GRAD, SPARSE, SPARSE_GRAD)
