// tfxent/cc/xent_layout.h: the layout of the row statistics that the forward ops save for
// their gradient ops, shared by the op registrations (xent_ops.cc) and the kernels
// (xent_kernels.cc) so the two cannot disagree.

#ifndef TFXENT_CC_XENT_LAYOUT_H_
#define TFXENT_CC_XENT_LAYOUT_H_

namespace tfxent {

// Per-row statistics: (max_j x_j, Σ_j exp(x_j − max), Σ_j y_j), always in double so every
// element type shares one layout (each value of T is exactly representable in double).
constexpr int kRowStats = 3;

}  // namespace tfxent

#endif  // TFXENT_CC_XENT_LAYOUT_H_
