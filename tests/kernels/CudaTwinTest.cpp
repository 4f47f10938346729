//===- CudaTwinTest.cpp - the CUDA twin against the host twin, kernel by kernel -===//
//
// Every kernel runs on both twins with the same inputs and the results are compared: bit for
// bit where both compute the same operations in the same order (casts, gathers, dropout
// masks, col2im), to fp32 tolerance where only summation order or libm differs, one code
// step for 8-bit optimizer states. The host twin is itself checked against float64 by the
// other tests, so agreement here validates the CUDA kernels. Labelled `gpu` in ctest; each
// test skips, saying why, when makeCudaDevice finds no usable GPU.
//
//===----------------------------------------------------------------------------===//

#include "KernelTestSupport.h"

#include <cmath>

using namespace trainmem::kernels;
using namespace trainmem::kernels::testing;

namespace {

/// The same buffer on both twins.
class TwinBuffer {
public:
  template <typename T>
  TwinBuffer(Device &Host, Device &Cuda, const std::vector<T> &Init)
      : HostDevice(&Host), OnHost(Host, Init), OnCuda(Cuda, Init) {}
  /// Zero-filled.
  TwinBuffer(Device &Host, Device &Cuda, size_t Bytes)
      : HostDevice(&Host), OnHost(Host, Bytes), OnCuda(Cuda, Bytes) {
    Host.zero(OnHost.as<void>(), Bytes);
    Cuda.zero(OnCuda.as<void>(), Bytes);
  }

  template <typename T = float> T *on(Device &D) const {
    return &D == HostDevice ? OnHost.as<T>() : OnCuda.as<T>();
  }
  float *f(Device &D) const { return on<float>(D); }
  const DeviceBuffer &host() const { return OnHost; }
  const DeviceBuffer &cuda() const { return OnCuda; }

private:
  Device *HostDevice;
  DeviceBuffer OnHost, OnCuda;
};

class CudaTwin : public ::testing::Test {
protected:
  void SetUp() override {
    std::string Why;
    Cuda = makeCudaDevice(0, Why);
    if (!Cuda)
      GTEST_SKIP() << "no usable CUDA device: " << Why;
  }
  void TearDown() override {
    EXPECT_EQ(Host->takeError(), "");
    if (Cuda) {
      EXPECT_TRUE(Cuda->synchronize());
      EXPECT_EQ(Cuda->takeError(), "");
    }
  }

  template <typename T> std::unique_ptr<TwinBuffer> input(const std::vector<T> &Values) {
    return std::make_unique<TwinBuffer>(*Host, *Cuda, Values);
  }
  std::unique_ptr<TwinBuffer> output(size_t Bytes) {
    return std::make_unique<TwinBuffer>(*Host, *Cuda, Bytes);
  }
  void forBoth(const std::function<void(Device &)> &Kernel) {
    Kernel(*Host);
    Kernel(*Cuda);
  }
  /// The CUDA result against the host's, relative to the host's largest magnitude.
  static ::testing::AssertionResult agree(const std::string &What, const TwinBuffer &B,
                                          double Tolerance = Fp32Tolerance) {
    return closeTo(What, B.cuda().read(), widen(B.host().read()), Tolerance);
  }
  template <typename T> static void identical(const std::string &What, const TwinBuffer &B) {
    EXPECT_TRUE(B.host().read<T>() == B.cuda().read<T>()) << What << " differs between twins";
  }

  std::unique_ptr<Device> Host = makeHostDevice();
  std::unique_ptr<Device> Cuda;
};

TEST_F(CudaTwin, MemoryAndCopies) {
  auto Values = randomFloats(1000, 300);
  auto Src = input(Values);
  auto Dst = output(Values.size() * 4);
  forBoth([&](Device &D) {
    D.copy(Dst->f(D), Src->f(D), 500 * 4);
    D.fill(Dst->f(D) + 500, 400, 2.5f);
  });
  identical<float>("copy and fill", *Dst);
  EXPECT_EQ(Dst->cuda().read()[10], Values[10]);
  EXPECT_EQ(Dst->cuda().read()[950], 0.0f); // zeroed at allocation, untouched since
  EXPECT_EQ(Cuda->allocate(size_t(1) << 60), nullptr);
  EXPECT_NE(Cuda->takeError().find("cudaMalloc"), std::string::npos);
  EXPECT_TRUE(Cuda->isCuda());
  EXPECT_EQ(Cuda->name().rfind("cuda:0", 0), 0u);
}

TEST_F(CudaTwin, MatmulFp32AndBf16) {
  for (bool TransA : {false, true})
    for (bool TransB : {false, true}) {
      const int64_t M = 37, N = 29, K = 70, Batch = 3;
      auto A = input(randomFloats(Batch * M * K, 301)), B = input(randomFloats(Batch * K * N, 302));
      auto C = input(randomFloats(Batch * M * N, 303));
      forBoth([&](Device &D) {
        MatmulArgs Args;
        Args.M = M;
        Args.N = N;
        Args.K = K;
        Args.Batch = Batch;
        Args.TransA = TransA;
        Args.TransB = TransB;
        Args.A = A->f(D);
        Args.B = B->f(D);
        Args.C = C->f(D);
        Args.Alpha = 0.5f;
        Args.Beta = 2.0f;
        D.matmul(Args);
      });
      EXPECT_TRUE(agree("fp32 matmul " + std::to_string(TransA) + std::to_string(TransB), *C));
    }

  const int64_t M = 40, N = 33, K = 100;
  auto A32 = input(randomFloats(M * K, 304)), B32 = input(randomFloats(N * K, 305));
  auto A16 = output(M * K * 2), B16 = output(N * K * 2);
  auto C32 = output(M * N * 4), C16 = output(M * N * 2), Back = output(M * K * 4);
  forBoth([&](Device &D) {
    D.castToBf16(A16->on<uint16_t>(D), A32->f(D), M * K);
    D.castToBf16(B16->on<uint16_t>(D), B32->f(D), N * K);
    D.castToF32(Back->f(D), A16->on<uint16_t>(D), M * K);
    MatmulArgs Args;
    Args.M = M;
    Args.N = N;
    Args.K = K;
    Args.TransB = true;
    Args.InputType = DType::BF16;
    Args.A = A16->on<uint16_t>(D);
    Args.B = B16->on<uint16_t>(D);
    Args.C = C32->f(D);
    D.matmul(Args);
    Args.OutputType = DType::BF16;
    Args.C = C16->on<uint16_t>(D);
    D.matmul(Args);
  });
  identical<uint16_t>("castToBf16", *A16);
  identical<float>("castToF32", *Back);
  EXPECT_TRUE(agree("bf16-input matmul", *C32));
  std::vector<float> HostBf16, CudaBf16;
  for (uint16_t Bits : C16->host().read<uint16_t>())
    HostBf16.push_back(bf16ToFloat(Bits));
  for (uint16_t Bits : C16->cuda().read<uint16_t>())
    CudaBf16.push_back(bf16ToFloat(Bits));
  EXPECT_TRUE(closeTo("bf16-output matmul", CudaBf16, widen(HostBf16), Bf16Tolerance));
}

TEST_F(CudaTwin, BiasElementwiseAndActivations) {
  const ChannelShape S{3, 70, 129};
  const int64_t N = S.elements();
  auto X = input(randomFloats(N, 310, -4.0f, 4.0f)), Y = input(randomFloats(N, 311));
  auto Bias = input(randomFloats(S.Channels, 312));
  auto Out = output(N * 4), Out2 = output(N * 4), DBias = output(S.Channels * 4);
  forBoth([&](Device &D) {
    D.biasAdd(Out->f(D), X->f(D), Bias->f(D), S);
    D.biasGrad(DBias->f(D), Y->f(D), S);
  });
  EXPECT_TRUE(agree("biasAdd", *Out));
  EXPECT_TRUE(agree("biasGrad", *DBias));
  forBoth([&](Device &D) { D.add(Out->f(D), X->f(D), Y->f(D), N); });
  identical<float>("add", *Out);
  forBoth([&](Device &D) { D.mul(Out->f(D), X->f(D), Y->f(D), N); });
  identical<float>("mul", *Out);
  forBoth([&](Device &D) { D.scale(Out->f(D), X->f(D), 0.3f, N); });
  identical<float>("scale", *Out);
  forBoth([&](Device &D) {
    D.mulBackward(Out->f(D), Out2->f(D), Y->f(D), X->f(D), Bias->f(D), S.Channels);
  });
  identical<float>("mulBackward", *Out);
  for (Activation Kind :
       {Activation::Relu, Activation::GeluErf, Activation::GeluTanh, Activation::Silu}) {
    std::string Name = "activation " + std::to_string(static_cast<int>(Kind));
    forBoth([&](Device &D) {
      D.activationForward(Kind, Out->f(D), X->f(D), N);
      D.activationBackward(Kind, Out2->f(D), Y->f(D), X->f(D), N);
    });
    EXPECT_TRUE(agree(Name + " forward", *Out));
    EXPECT_TRUE(agree(Name + " backward", *Out2));
  }
}

TEST_F(CudaTwin, LayerNormAndRmsNorm) {
  const int64_t Rows = 33, Cols = 300; // more columns than a block has threads
  auto X = input(randomFloats(Rows * Cols, 320, 1.0f, 3.0f)),
       DY = input(randomFloats(Rows * Cols, 321));
  auto Gamma = input(randomFloats(Cols, 322)), Beta = input(randomFloats(Cols, 323));
  auto Y = output(Rows * Cols * 4), Mean = output(Rows * 4), Rstd = output(Rows * 4);
  auto DX = output(Rows * Cols * 4), DGamma = output(Cols * 4), DBeta = output(Cols * 4);
  forBoth([&](Device &D) {
    D.layerNormForward(Y->f(D), Mean->f(D), Rstd->f(D), X->f(D), Gamma->f(D), Beta->f(D), Rows,
                       Cols, 1e-5f);
    D.layerNormBackward(DX->f(D), DGamma->f(D), DBeta->f(D), DY->f(D), X->f(D), Mean->f(D),
                        Rstd->f(D), Gamma->f(D), Rows, Cols);
  });
  EXPECT_TRUE(agree("layerNorm Y", *Y));
  EXPECT_TRUE(agree("layerNorm mean", *Mean));
  EXPECT_TRUE(agree("layerNorm rstd", *Rstd));
  EXPECT_TRUE(agree("layerNorm dX", *DX));
  EXPECT_TRUE(agree("layerNorm dGamma", *DGamma));
  EXPECT_TRUE(agree("layerNorm dBeta", *DBeta));
  forBoth([&](Device &D) {
    D.rmsNormForward(Y->f(D), Rstd->f(D), X->f(D), Gamma->f(D), Rows, Cols, 1e-6f);
    D.rmsNormBackward(DX->f(D), DGamma->f(D), DY->f(D), X->f(D), Rstd->f(D), Gamma->f(D), Rows,
                      Cols);
  });
  EXPECT_TRUE(agree("rmsNorm Y", *Y));
  EXPECT_TRUE(agree("rmsNorm rstd", *Rstd));
  EXPECT_TRUE(agree("rmsNorm dX", *DX));
  EXPECT_TRUE(agree("rmsNorm dGamma", *DGamma));
}

TEST_F(CudaTwin, SoftmaxCrossEntropyAndEmbedding) {
  for (bool Causal : {false, true}) {
    const int64_t Rows = 3 * 300, Cols = 300;
    auto X = input(randomFloats(Rows * Cols, 330, -5.0f, 5.0f)),
         DY = input(randomFloats(Rows * Cols, 331));
    auto Y = output(Rows * Cols * 4), DX = output(Rows * Cols * 4);
    forBoth([&](Device &D) {
      D.softmaxForward(Y->f(D), X->f(D), Rows, Cols, Causal);
      D.softmaxBackward(DX->f(D), DY->f(D), Y->f(D), Rows, Cols);
    });
    EXPECT_TRUE(agree(Causal ? "causal softmax" : "softmax", *Y));
    EXPECT_TRUE(agree(Causal ? "causal softmax backward" : "softmax backward", *DX));
  }

  const int64_t Rows = 20, Classes = 1000;
  std::vector<int64_t> TargetValues(Rows);
  for (int64_t R = 0; R < Rows; ++R)
    TargetValues[R] = R % 4 == 1 ? -100 : (R * 37) % Classes;
  auto Logits = input(randomFloats(Rows * Classes, 332, -6.0f, 6.0f)),
       Targets = input(TargetValues);
  auto LogProbs = output(Rows * Classes * 4), Loss = output(4), Total = output(4);
  auto DLogits = output(Rows * Classes * 4);
  forBoth([&](Device &D) {
    D.crossEntropyForward(LogProbs->f(D), Loss->f(D), Total->f(D), Logits->f(D),
                          Targets->on<int64_t>(D), Rows, Classes, -100);
    D.crossEntropyBackward(DLogits->f(D), LogProbs->f(D), Targets->on<int64_t>(D), Total->f(D),
                           Rows, Classes, -100, 1.0f);
  });
  EXPECT_TRUE(agree("log_softmax", *LogProbs));
  EXPECT_TRUE(agree("loss", *Loss));
  identical<float>("total weight", *Total);
  EXPECT_TRUE(agree("dLogits", *DLogits));

  const int64_t Vocab = 50, Dim = 96, NumIds = 300;
  std::vector<int64_t> IdValues(NumIds);
  for (int64_t I = 0; I < NumIds; ++I)
    IdValues[I] = (I * 7) % (Vocab + 2) - 1; // repeats, plus -1 and Vocab
  auto Ids = input(IdValues), Weight = input(randomFloats(Vocab * Dim, 333));
  auto DOut = input(randomFloats(NumIds * Dim, 334));
  auto Rows2 = output(NumIds * Dim * 4), DWeight = output(Vocab * Dim * 4);
  forBoth([&](Device &D) {
    D.embeddingForward(Rows2->f(D), Weight->f(D), Ids->on<int64_t>(D), NumIds, Vocab, Dim);
    D.embeddingBackward(DWeight->f(D), DOut->f(D), Ids->on<int64_t>(D), NumIds, Vocab, Dim);
  });
  identical<float>("embedding rows", *Rows2);
  EXPECT_TRUE(agree("embedding dWeight (atomics)", *DWeight));
}

TEST_F(CudaTwin, DropoutMasksAreIdentical) {
  const int64_t N = 1 << 20;
  auto X = input(randomFloats(N, 340)), DY = input(randomFloats(N, 341));
  auto Y = output(N * 4), Mask = output(N), DX = output(N * 4);
  forBoth([&](Device &D) {
    D.dropoutForward(Y->f(D), Mask->on<uint8_t>(D), X->f(D), N, 0.1f, 777, 12345);
    D.dropoutBackward(DX->f(D), DY->f(D), Mask->on<uint8_t>(D), N, 0.1f);
  });
  identical<uint8_t>("dropout mask", *Mask);
  identical<float>("dropout output", *Y);
  identical<float>("dropout gradient", *DX);
}

TEST_F(CudaTwin, AttentionNaiveAndTiled) {
  for (int64_t HeadDim : {int64_t(40), int64_t(64), MaxTiledHeadDim})
    for (bool Causal : {true, false}) {
      AttentionShape S{2, 3, 70, HeadDim, Causal};
      std::string Name = " Dh=" + std::to_string(HeadDim) + (Causal ? " causal" : " full");
      auto Q = input(randomFloats(S.elements(), 350)), K = input(randomFloats(S.elements(), 351));
      auto V = input(randomFloats(S.elements(), 352)), DO = input(randomFloats(S.elements(), 353));
      size_t Bytes = S.elements() * 4, PBytes = S.probabilityElements() * 4;
      auto O = output(Bytes), P = output(PBytes), DScores = output(PBytes);
      auto DQ = output(Bytes), DK = output(Bytes), DV = output(Bytes);
      auto TO = output(Bytes), Lse = output(S.rows() * 4), Delta = output(S.rows() * 4);
      auto TDQ = output(Bytes), TDK = output(Bytes), TDV = output(Bytes);
      forBoth([&](Device &D) {
        attentionForwardNaive(D, O->f(D), P->f(D), Q->f(D), K->f(D), V->f(D), S);
        attentionBackwardNaive(D, DQ->f(D), DK->f(D), DV->f(D), DScores->f(D), DO->f(D), Q->f(D),
                               K->f(D), V->f(D), P->f(D), S);
        D.attentionForwardTiled(TO->f(D), Lse->f(D), Q->f(D), K->f(D), V->f(D), S);
        D.attentionBackwardTiled(TDQ->f(D), TDK->f(D), TDV->f(D), Delta->f(D), DO->f(D), Q->f(D),
                                 K->f(D), V->f(D), TO->f(D), Lse->f(D), S);
      });
      EXPECT_TRUE(agree("naive O" + Name, *O));
      EXPECT_TRUE(agree("naive P" + Name, *P));
      EXPECT_TRUE(agree("naive dQ" + Name, *DQ));
      EXPECT_TRUE(agree("naive dK" + Name, *DK));
      EXPECT_TRUE(agree("naive dV" + Name, *DV));
      EXPECT_TRUE(agree("tiled O" + Name, *TO));
      EXPECT_TRUE(agree("tiled Lse" + Name, *Lse));
      EXPECT_TRUE(agree("tiled dQ" + Name, *TDQ));
      EXPECT_TRUE(agree("tiled dK" + Name, *TDK));
      EXPECT_TRUE(agree("tiled dV" + Name, *TDV));
    }
}

TEST_F(CudaTwin, AdamAndAdam8bit) {
  const int64_t N = 3000; // eleven full quantization blocks and a partial one
  auto Param = input(randomFloats(N, 360)), M = output(N * 4), V = output(N * 4);
  auto Param8 = input(randomFloats(N, 360));
  int64_t Blocks = (N + QuantBlockSize - 1) / QuantBlockSize;
  auto Codes1 = output(N), Codes2 = output(N);
  auto Absmax1 = output(Blocks * 4), Absmax2 = output(Blocks * 4);
  auto SignedMapArray = dynamicQuantizationMap(true),
       UnsignedMapArray = dynamicQuantizationMap(false);
  auto SignedMap = input(std::vector<float>(SignedMapArray.begin(), SignedMapArray.end()));
  auto UnsignedMap = input(std::vector<float>(UnsignedMapArray.begin(), UnsignedMapArray.end()));
  AdamOptions O;
  O.Lr = 1e-2;
  O.WeightDecay = 0.01;
  for (O.Step = 1; O.Step <= 3; ++O.Step) {
    auto Grad = input(randomFloats(N, 361 + static_cast<uint32_t>(O.Step)));
    forBoth([&](Device &D) {
      D.adamStep(Param->f(D), Grad->f(D), M->f(D), V->f(D), N, O);
      Adam8bitState State;
      State.ExpAvgCodes = Codes1->on<uint8_t>(D);
      State.ExpAvgSqCodes = Codes2->on<uint8_t>(D);
      State.ExpAvgAbsmax = Absmax1->f(D);
      State.ExpAvgSqAbsmax = Absmax2->f(D);
      State.SignedMap = SignedMap->f(D);
      State.UnsignedMap = UnsignedMap->f(D);
      D.adam8bitStep(Param8->f(D), Grad->f(D), State, N, O);
    });
  }
  EXPECT_TRUE(agree("adam param", *Param));
  EXPECT_TRUE(agree("adam exp_avg", *M));
  EXPECT_TRUE(agree("adam exp_avg_sq", *V));
  // The per-element arithmetic is identical (nvcc runs with -fmad=false), but should a value
  // on a code boundary round differently, the next steps' updates move by about lr times one
  // code step of its state: a few 1e-4 of these parameters.
  EXPECT_TRUE(agree("adam8bit param", *Param8, 2e-3));
  EXPECT_TRUE(agree("adam8bit absmax1", *Absmax1));
  EXPECT_TRUE(agree("adam8bit absmax2", *Absmax2));
  // A value on a decision boundary may round to the neighbouring code on one twin.
  for (const TwinBuffer *Codes : {Codes1.get(), Codes2.get()}) {
    auto HostCodes = Codes->host().read<uint8_t>(), CudaCodes = Codes->cuda().read<uint8_t>();
    int64_t Different = 0;
    for (int64_t I = 0; I < N; ++I) {
      ASSERT_LE(std::abs(int(HostCodes[I]) - int(CudaCodes[I])), 1) << "element " << I;
      Different += HostCodes[I] != CudaCodes[I];
    }
    EXPECT_LE(Different, N / 100);
  }
}

TEST_F(CudaTwin, GaloreAndLora) {
  const int64_t M = 64, N = 48, Rank = 8;
  auto G = input(randomFloats(M * N, 370));
  auto P = output(M * Rank * 4), Sketch = output(N * Rank * 4), R = output(Rank * N * 4);
  auto Back = output(M * N * 4), Noise = output(1000 * 4);
  forBoth([&](Device &D) {
    D.fillNormal(Noise->f(D), 1000, 5, 17);
    galoreUpdateProjector(D, P->f(D), Sketch->f(D), G->f(D), M, N, Rank, 9, 1);
    galoreProject(D, R->f(D), P->f(D), G->f(D), M, N, Rank);
    galoreProjectBack(D, Back->f(D), P->f(D), R->f(D), M, N, Rank, 0.5f);
  });
  EXPECT_TRUE(agree("fillNormal", *Noise));
  EXPECT_TRUE(agree("GaLore projector", *P, 1e-4));
  EXPECT_TRUE(agree("GaLore R", *R, 1e-4));
  EXPECT_TRUE(agree("GaLore back-projection", *Back, 1e-4));

  LoraShape L{50, 64, 48, 8, 16.0f};
  auto X = input(randomFloats(L.Tokens * L.InFeatures, 371));
  auto A = input(randomFloats(L.Rank * L.InFeatures, 372));
  auto B = input(randomFloats(L.OutFeatures * L.Rank, 373));
  auto DOut = input(randomFloats(L.Tokens * L.OutFeatures, 374));
  auto Out = input(randomFloats(L.Tokens * L.OutFeatures, 375));
  auto XA = output(L.Tokens * L.Rank * 4), DXA = output(L.Tokens * L.Rank * 4);
  auto DX = output(L.Tokens * L.InFeatures * 4), DA = output(L.Rank * L.InFeatures * 4);
  auto DB = output(L.OutFeatures * L.Rank * 4);
  forBoth([&](Device &D) {
    loraForward(D, Out->f(D), XA->f(D), X->f(D), A->f(D), B->f(D), L, true);
    loraBackward(D, DX->f(D), DA->f(D), DB->f(D), DXA->f(D), DOut->f(D), X->f(D), XA->f(D), A->f(D),
                 B->f(D), L, false);
  });
  EXPECT_TRUE(agree("LoRA out", *Out));
  EXPECT_TRUE(agree("LoRA dX", *DX));
  EXPECT_TRUE(agree("LoRA dA", *DA));
  EXPECT_TRUE(agree("LoRA dB", *DB));
}

TEST_F(CudaTwin, Conv2dForwardAndBackward) {
  for (int64_t Groups : {1, 2, 8}) {
    ConvShape S;
    S.Batch = 2;
    S.InChannels = 8;
    S.Height = 13;
    S.Width = 11;
    S.OutChannels = Groups == 8 ? 8 : 12;
    S.KernelH = S.KernelW = 3;
    S.StrideH = 2;
    S.PadH = S.PadW = 1;
    S.DilationW = 2;
    S.Groups = Groups;
    std::string Name = " groups=" + std::to_string(Groups);
    int64_t InElements = S.Batch * S.InChannels * S.Height * S.Width;
    int64_t WElements = S.OutChannels * (S.InChannels / Groups) * S.KernelH * S.KernelW;
    int64_t OutElements = S.Batch * S.OutChannels * S.outHeight() * S.outWidth();
    auto X = input(randomFloats(InElements, 380)), W = input(randomFloats(WElements, 381));
    auto Bias = input(randomFloats(S.OutChannels, 382)),
         DOut = input(randomFloats(OutElements, 383));
    auto Out = output(OutElements * 4), Work = output(conv2dWorkspaceBytes(S));
    auto DX = output(InElements * 4), DW = output(WElements * 4), DB = output(S.OutChannels * 4);
    auto Col = output(conv2dWorkspaceBytes(S)), Image = output(InElements * 4);
    forBoth([&](Device &D) {
      D.im2col(Col->f(D), X->f(D), S);
      D.col2im(Image->f(D), Col->f(D), S);
      conv2dForward(D, Out->f(D), Work->f(D), X->f(D), W->f(D), Bias->f(D), S);
      conv2dBackwardData(D, DX->f(D), Work->f(D), DOut->f(D), W->f(D), S);
      conv2dBackwardWeight(D, DW->f(D), DB->f(D), Work->f(D), DOut->f(D), X->f(D), S);
    });
    identical<float>("im2col" + Name, *Col);
    identical<float>("col2im" + Name, *Image);
    EXPECT_TRUE(agree("conv out" + Name, *Out));
    EXPECT_TRUE(agree("conv dInput" + Name, *DX));
    EXPECT_TRUE(agree("conv dWeight" + Name, *DW));
    EXPECT_TRUE(agree("conv dBias" + Name, *DB));
  }
}

TEST_F(CudaTwin, OrthonormalizeColumns) {
  const int64_t Rows = 300, Cols = 12;
  auto A = input(randomFloats(Rows * Cols, 390));
  forBoth([&](Device &D) { D.orthonormalizeColumns(A->f(D), Rows, Cols); });
  EXPECT_TRUE(agree("Gram-Schmidt", *A, 1e-4));
}

} // namespace
