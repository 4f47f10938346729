//===- SimulationCache.h - step simulations shared across a plan search -*- C++ -*-===//
//
// A plan search simulates the same step many times: a candidate's evaluation, the
// optimal-checkpoint search's "none" and "blocks" probes and its verified choice, the
// largest-micro-batch bisection. Within one search the model is fixed, so the setup (its
// JSON form, the names it trains) and the graph's inputs decide the simulation; this
// keeps each result once, for every candidate and worker thread of the search. It is
// created per search and never outlives it (another model needs another cache).
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_PLANNER_SIMULATIONCACHE_H
#define TRAINMEM_PLANNER_SIMULATIONCACHE_H

#include "analyzer/Graph.h"
#include "analyzer/ParameterCensus.h"
#include "analyzer/StepSimulator.h"
#include "analyzer/TrainingSetup.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/Error.h"

#include <atomic>
#include <map>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <string>

namespace trainmem {

/// A candidate's model as the search simulates it: the graph with the strategies applied
/// (LoRA's adapters), the setup they resolved to (the names that train) and its census.
struct PreparedModel {
  std::shared_ptr<const Graph> G; ///< shared with every candidate of the same transform
  TrainingSetup Setup;
  /// Shared by every micro-batch of the same transform and setup (see census()).
  std::shared_ptr<const ParameterCensus> Census;
};

class SimulationCache {
public:
  /// The prepared model kept under Key, or Build's, kept for the next equal request.
  /// Errors are not kept. Checkpointing changes neither graph nor census, so the search
  /// keys its candidates without it and shares one prepared model among their probes.
  llvm::Expected<std::shared_ptr<const PreparedModel>>
  prepared(const std::string &Key, llvm::function_ref<llvm::Expected<PreparedModel>()> Build);

  /// The search's model: Import builds the graph for one micro-batch.
  void setModel(std::function<llvm::Expected<Graph>(int64_t MicroBatch)> Import);
  /// The model at a micro-batch, imported once and shared read-only. Import runs one call
  /// at a time, so it need not be thread-safe.
  llvm::Expected<std::shared_ptr<const Graph>> model(int64_t MicroBatch);
  /// The graph kept under Key, or Build's (the models' LoRA transforms), shared read-only
  /// by every candidate that needs it.
  llvm::Expected<std::shared_ptr<const Graph>>
  graph(const std::string &Key, llvm::function_ref<llvm::Expected<Graph>()> Build);

  /// simulateStep without details, or the result kept from an equal request. Errors are
  /// not kept. Stop: a probe that needs less than the whole step (StepStop); a whole
  /// result kept for the same step answers it too, and a stopped one answers only probes
  /// that ask the same: a request for the whole step's figures replays it again.
  llvm::Expected<StepSimulation> simulate(const Graph &G, const TrainingSetup &Setup,
                                          const ParameterCensus &Census, StepStop Stop = {});

  /// takeCensus(G, Setup), kept for every graph that differs from G at most in its
  /// activations' dims (another micro-batch of the same transform) under a setup that
  /// differs at most in micro-batch and accumulation: the census reads the stored
  /// tensors, the graph's structure and the setup, which the key holds.
  llvm::Expected<std::shared_ptr<const ParameterCensus>> census(const Graph &G,
                                                                const TrainingSetup &Setup);

  /// The graph's step structure (ops, module holds, block spans), built once per LoRA
  /// transform of the search's model: the micro-batch changes none of it.
  std::shared_ptr<const StepStructure> structureFor(const Graph &G, const TrainingSetup &Setup);

  /// Replays run (stopped ones included), requests answered from the cache, and the
  /// replays that stopped short of the whole step (StepStop).
  int64_t simulations() const { return Simulations; }
  int64_t hits() const { return Hits; }
  int64_t stopped() const { return Stopped; }

private:
  /// Map[Key], or Build()'s value kept there. Built outside the lock; a thread asking for
  /// a value another is building waits for it instead of building it again (no build
  /// asks for its own key, so no thread waits for itself). Errors are not kept: a waiter
  /// whose builder failed builds it again. Hit: whether the value was found.
  template <typename V, typename BuildFn>
  llvm::Expected<V> once(std::map<std::string, V> &Map, std::string Key, BuildFn Build,
                         bool *Hit = nullptr) {
    auto Flight = std::make_pair(static_cast<const void *>(&Map), Key);
    {
      std::unique_lock<std::mutex> Guard(Lock);
      Finished.wait(Guard, [&] { return !InFlight.count(Flight); });
      if (auto It = Map.find(Key); It != Map.end()) {
        if (Hit)
          *Hit = true;
        return It->second;
      }
      InFlight.insert(Flight);
    }
    llvm::Expected<V> Built = Build();
    std::lock_guard<std::mutex> Guard(Lock);
    InFlight.erase(Flight);
    Finished.notify_all();
    if (!Built)
      return Built.takeError();
    return Map.emplace(std::move(Key), std::move(*Built)).first->second;
  }

  /// once() for a value built by Build (an Expected<T>) and kept behind a shared_ptr.
  template <typename T, typename BuildFn>
  llvm::Expected<std::shared_ptr<const T>>
  keepShared(std::map<std::string, std::shared_ptr<const T>> &Map, const std::string &Key,
             BuildFn Build) {
    return once(Map, Key, [&]() -> llvm::Expected<std::shared_ptr<const T>> {
      llvm::Expected<T> Built = Build();
      if (!Built)
        return Built.takeError();
      return std::make_shared<const T>(std::move(*Built));
    });
  }

  std::mutex Lock;
  std::condition_variable Finished;
  std::set<std::pair<const void *, std::string>> InFlight; ///< (map, key) being built
  std::function<llvm::Expected<Graph>(int64_t)> Import;
  std::mutex ImportLock;
  std::map<std::string, StepSimulation> Results;
  /// Probes' results (stopped or whole), by step key and what the probe asked.
  std::map<std::string, StepSimulation> Probes;
  std::map<std::string, std::shared_ptr<const StepStructure>> Structures;
  std::map<std::string, std::shared_ptr<const PreparedModel>> Prepared;
  std::map<std::string, std::shared_ptr<const ParameterCensus>> Censuses;
  std::map<std::string, std::shared_ptr<const Graph>> Graphs;
  std::atomic<int64_t> Simulations{0}, Hits{0}, Stopped{0};
};

/// Through the cache when there is one, else a plain simulation without details.
llvm::Expected<StepSimulation>
simulateForPlanning(SimulationCache *Cache, const Graph &G, const TrainingSetup &Setup,
                    const ParameterCensus &Census, StepStop Stop = {});

} // namespace trainmem

#endif
