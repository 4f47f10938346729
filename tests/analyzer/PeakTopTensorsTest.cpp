//===- PeakTopTensorsTest.cpp - the ten largest tensors at the peak ---------------===//
//
// sim::Memory picks the peak's top 10 from the last top 10 and the storages made since
// while none of those ten has been freed; these runs hold it to a plain sort of every live
// storage at each rise of the peak.
//
//===----------------------------------------------------------------------------===//
#include "analyzer/StepSimulatorState.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

using namespace trainmem;
using namespace trainmem::sim;

namespace {

/// The ten largest live storages, the older first on ties, as names.
std::vector<std::string> bruteForceTop(const std::vector<std::pair<int64_t, StorageId>> &Live) {
  std::vector<std::pair<int64_t, StorageId>> Sorted(Live);
  std::sort(Sorted.begin(), Sorted.end(), [](const auto &A, const auto &B) {
    return A.first != B.first ? A.first > B.first : A.second < B.second;
  });
  std::vector<std::string> Names;
  for (size_t I = 0; I < std::min<size_t>(10, Sorted.size()); ++I)
    Names.push_back("t" + std::to_string(Sorted[I].second));
  return Names;
}

} // namespace

TEST(PeakTopTensors, SameAsSortingEveryLiveStorage) {
  int Rises = 0, Checked = 0;
  for (unsigned Seed = 1; Seed <= 60; ++Seed) {
    std::mt19937 Rng(Seed);
    Memory Mem;
    std::vector<std::pair<int64_t, StorageId>> Live; // bytes, id
    // Few distinct sizes: ties on bytes are common, as between layers of a transformer.
    const int64_t Sizes = 2 + Seed % 7;
    for (int Event = 0; Event < 600; ++Event) {
      // Phases that mostly allocate (a forward) and mostly free (a backward).
      const bool Forward = (Event / 150) % 2 == 0;
      const bool Free = !Live.empty() && Rng() % 100 < (Forward ? 30u : 65u);
      // One storage made per event, so that ids are event numbers: a freeing event makes
      // a one-byte temporary and frees it at once (a storage that dies young).
      const auto Id = static_cast<StorageId>(Event);
      if (Free) {
        size_t Pick = Rng() % Live.size();
        Mem.release(Live[Pick].second);
        Live.erase(Live.begin() + static_cast<std::ptrdiff_t>(Pick));
        EXPECT_EQ(Mem.alloc(1, Cat::Temporaries, "t" + std::to_string(Id), "op", "",
                            DType::Float32, {}),
                  Id);
        Mem.release(Id);
      } else {
        int64_t Bytes = 1024 * (1 + static_cast<int64_t>(Rng() % Sizes));
        EXPECT_EQ(Mem.alloc(Bytes, Cat::Activations, "t" + std::to_string(Id), "op", "",
                            DType::Float32, {Bytes / 4}),
                  Id);
        Live.push_back({Bytes, Id});
      }
      const int64_t PeakBefore = Mem.Peak;
      Mem.point("forward", "op", "");
      if (Mem.Peak == PeakBefore)
        continue;
      ++Rises;
      std::vector<std::string> Got;
      for (const TensorSummary &T : Mem.peakDetail().TopTensors)
        Got.push_back(T.Name);
      ASSERT_EQ(Got, bruteForceTop(Live)) << "seed " << Seed << ", event " << Event;
      ++Checked;
    }
  }
  EXPECT_GT(Rises, 500);
  EXPECT_EQ(Checked, Rises);
}

TEST(PeakTopTensors, ShowTheTensorsAsTheyWereAtThePeak) {
  // A rename or a new category after the peak's last rise leaves its tensors as they were.
  Memory Mem;
  StorageId A = Mem.alloc(4096, Cat::Activations, "first", "op", "layer.0", DType::Float32,
                          {1024});
  Mem.point("forward", "op", "");
  Mem.release(A);
  Mem.point("forward", "op", "");
  ASSERT_EQ(Mem.peakDetail().TopTensors.size(), 1u);
  StorageId B = Mem.alloc(1024, Cat::Temporaries, "second", "op", "", DType::Float32, {256});
  Mem.rename(B, "renamed");
  Mem.recategorize(B, Cat::Activations);
  Mem.point("forward", "op", ""); // below the peak: no rise
  PeakDetail D = Mem.peakDetail();
  ASSERT_EQ(D.TopTensors.size(), 1u);
  EXPECT_EQ(D.TopTensors[0].Name, "first");
  EXPECT_EQ(D.TopTensors[0].Category, "activations");
  EXPECT_EQ(D.TopTensors[0].Layer, "layer.0");
  EXPECT_EQ(D.TopTensors[0].Shape, std::vector<int64_t>{1024});
  EXPECT_EQ(D.TopTensors[0].Bytes, 4096);
  EXPECT_EQ(Mem.name(B), "renamed");
}
