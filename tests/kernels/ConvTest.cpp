//===- ConvTest.cpp - conv2d by im2col + matmul, and its gradients -------===//
//
// conv2d against a direct float64 convolution for padding, stride, dilation, groups and the
// depthwise case; dinput, dweight and dbias against central differences; im2col and col2im
// as adjoints; the workspace size; and the rejection of groups that do not divide.
//
//===----------------------------------------------------------------------------===//

#include "KernelTestSupport.h"

#include <algorithm>
#include <cmath>

using namespace trainmem::kernels;
using namespace trainmem::kernels::testing;

namespace {

int64_t inputElements(const ConvShape &S) { return S.Batch * S.InChannels * S.Height * S.Width; }
int64_t weightElements(const ConvShape &S) {
  return S.OutChannels * (S.InChannels / S.Groups) * S.KernelH * S.KernelW;
}
int64_t outputElements(const ConvShape &S) {
  return S.Batch * S.OutChannels * S.outHeight() * S.outWidth();
}

std::vector<double> referenceConv(const std::vector<double> &X, const std::vector<double> &W,
                                  const std::vector<double> &Bias, const ConvShape &S) {
  int64_t OH = S.outHeight(), OW = S.outWidth();
  int64_t Cg = S.InChannels / S.Groups, Kg = S.OutChannels / S.Groups;
  std::vector<double> Out(outputElements(S));
  for (int64_t N = 0; N < S.Batch; ++N)
    for (int64_t K = 0; K < S.OutChannels; ++K)
      for (int64_t Oh = 0; Oh < OH; ++Oh)
        for (int64_t Ow = 0; Ow < OW; ++Ow) {
          double Sum = Bias[K];
          for (int64_t Cc = 0; Cc < Cg; ++Cc)
            for (int64_t R = 0; R < S.KernelH; ++R)
              for (int64_t Q = 0; Q < S.KernelW; ++Q) {
                int64_t C = (K / Kg) * Cg + Cc;
                int64_t Ih = Oh * S.StrideH - S.PadH + R * S.DilationH;
                int64_t Iw = Ow * S.StrideW - S.PadW + Q * S.DilationW;
                if (Ih < 0 || Ih >= S.Height || Iw < 0 || Iw >= S.Width)
                  continue;
                Sum += X[((N * S.InChannels + C) * S.Height + Ih) * S.Width + Iw] *
                       W[((K * Cg + Cc) * S.KernelH + R) * S.KernelW + Q];
              }
          Out[((N * S.OutChannels + K) * OH + Oh) * OW + Ow] = Sum;
        }
  return Out;
}

ConvShape shape(int64_t Batch, int64_t C, int64_t H, int64_t W, int64_t K, int64_t KH, int64_t KW,
                int64_t Stride, int64_t Pad, int64_t Dilation, int64_t Groups) {
  ConvShape S;
  S.Batch = Batch;
  S.InChannels = C;
  S.Height = H;
  S.Width = W;
  S.OutChannels = K;
  S.KernelH = KH;
  S.KernelW = KW;
  S.StrideH = S.StrideW = Stride;
  S.PadH = S.PadW = Pad;
  S.DilationH = S.DilationW = Dilation;
  S.Groups = Groups;
  return S;
}

/// 3x3 padded; strided and dilated with a 3x2 kernel; unequal strides, padding and dilation
/// per axis; grouped; depthwise.
std::vector<ConvShape> testShapes() {
  ConvShape Uneven = shape(1, 2, 8, 9, 2, 2, 3, 1, 0, 1, 1);
  Uneven.StrideW = 2;
  Uneven.PadH = 1;
  Uneven.DilationW = 2;
  return {shape(2, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1), shape(1, 2, 9, 8, 3, 3, 2, 2, 0, 2, 1), Uneven,
          shape(2, 4, 5, 5, 6, 3, 3, 1, 1, 1, 2), shape(2, 3, 5, 6, 3, 3, 3, 2, 1, 1, 3)};
}

std::string describe(const ConvShape &S) {
  return "conv C=" + std::to_string(S.InChannels) + " K=" + std::to_string(S.OutChannels) +
         " stride=" + std::to_string(S.StrideH) + " groups=" + std::to_string(S.Groups);
}

class Conv : public HostKernelTest {};

TEST_F(Conv, ForwardMatchesDirectConvolution) {
  uint32_t Seed = 150;
  for (const ConvShape &S : testShapes()) {
    auto X = randomFloats(inputElements(S), Seed++), W = randomFloats(weightElements(S), Seed++);
    auto B = randomFloats(S.OutChannels, Seed++);
    DeviceBuffer DX(*D, X), DW(*D, W), DB(*D, B), Out(*D, outputElements(S) * 4);
    DeviceBuffer Workspace(*D, conv2dWorkspaceBytes(S));
    conv2dForward(*D, Out.f(), Workspace.f(), DX.f(), DW.f(), DB.f(), S);
    EXPECT_TRUE(closeTo(describe(S), Out.read(), referenceConv(widen(X), widen(W), widen(B), S),
                        Fp32Tolerance));
  }
}

TEST_F(Conv, GradientsMatchFiniteDifferences) {
  uint32_t Seed = 170;
  for (const ConvShape &S : testShapes()) {
    auto X = randomFloats(inputElements(S), Seed++), W = randomFloats(weightElements(S), Seed++);
    auto B = randomFloats(S.OutChannels, Seed++), G = randomFloats(outputElements(S), Seed++);
    DeviceBuffer DX(*D, X), DW(*D, W), DG(*D, G), Workspace(*D, conv2dWorkspaceBytes(S));
    DeviceBuffer GX(*D, X.size() * 4), GW(*D, W.size() * 4), GB(*D, B.size() * 4);
    conv2dBackwardData(*D, GX.f(), Workspace.f(), DG.f(), DW.f(), S);
    conv2dBackwardWeight(*D, GW.f(), GB.f(), Workspace.f(), DG.f(), DX.f(), S);
    auto Xd = widen(X), Wd = widen(W), Bd = widen(B), Gd = widen(G);
    auto NumX = numericGradient(
        [&](const std::vector<double> &V) { return weightedSum(referenceConv(V, Wd, Bd, S), Gd); },
        Xd);
    auto NumW = numericGradient(
        [&](const std::vector<double> &V) { return weightedSum(referenceConv(Xd, V, Bd, S), Gd); },
        Wd);
    auto NumB = numericGradient(
        [&](const std::vector<double> &V) { return weightedSum(referenceConv(Xd, Wd, V, S), Gd); },
        Bd);
    EXPECT_TRUE(closeTo(describe(S) + " dInput", GX.read(), NumX, GradientTolerance));
    EXPECT_TRUE(closeTo(describe(S) + " dWeight", GW.read(), NumW, GradientTolerance));
    EXPECT_TRUE(closeTo(describe(S) + " dBias", GB.read(), NumB, GradientTolerance));
  }
}

TEST_F(Conv, Im2colAndCol2imAreAdjoint) {
  // <im2col(x), c> = <x, col2im(c)>: col2im sums exactly the entries im2col copied.
  ConvShape S = shape(1, 3, 7, 6, 2, 3, 2, 2, 1, 2, 1);
  S.StrideW = 1;
  S.DilationW = 3;
  int64_t ImageElements = S.InChannels * S.Height * S.Width;
  int64_t ColElements = S.columnRows() * S.columnCols();
  EXPECT_EQ(conv2dWorkspaceBytes(S), static_cast<size_t>(ColElements) * 4);
  auto X = randomFloats(ImageElements, 190), C = randomFloats(ColElements, 191);
  DeviceBuffer DX(*D, X), DC(*D, C), Col(*D, ColElements * 4), Image(*D, ImageElements * 4);
  D->im2col(Col.f(), DX.f(), S);
  D->col2im(Image.f(), DC.f(), S);
  double Left = weightedSum(widen(Col.read()), widen(C));
  double Right = weightedSum(widen(Image.read()), widen(X));
  EXPECT_NEAR(Left, Right, 1e-4 * std::max(1.0, std::fabs(Left)));
}

TEST_F(Conv, RejectsGroupsThatDoNotDivide) {
  ConvShape S = shape(1, 4, 5, 5, 6, 3, 3, 1, 1, 1, 3);
  conv2dForward(*D, nullptr, nullptr, nullptr, nullptr, nullptr, S);
  EXPECT_NE(D->takeError().find("groups (3) must divide"), std::string::npos);
}

} // namespace
