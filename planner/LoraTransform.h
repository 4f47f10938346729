//===- LoraTransform.h - LoRA and QLoRA as graph transformations ------*- C++ -*-===//
//
// Strategies change the graph the simulator replays, never a formula on the side. LoRA
// adds, beside every targeted linear layer, the adapter PEFT builds: an optional dropout
// of the input, A (in x r) and B (r x out) matmuls, the alpha/r scale and the sum with
// the frozen base output. QLoRA also stores the base linear weights in bitsandbytes'
// NF4 format, which the census counts and the simulator dequantizes per use.
//
//===----------------------------------------------------------------------------===//
#ifndef TRAINMEM_PLANNER_LORATRANSFORM_H
#define TRAINMEM_PLANNER_LORATRANSFORM_H

#include "analyzer/Graph.h"
#include "analyzer/TrainingSetup.h"

#include "llvm/Support/Error.h"

namespace trainmem {

/// PEFT's default target modules for the architecture the layer paths suggest
/// (q_proj,v_proj for LLaMA-style models, c_attn for GPT-2, query,value for BERT,
/// query_key_value for GPT-NeoX), or an empty list when none is known.
std::vector<std::string> defaultLoraTargets(const Graph &G);

/// Bytes of an N-element weight in bitsandbytes' NF4 with double quantization
/// (quantize_4bit, blocksize 64, compress_statistics=True).
int64_t nf4StorageBytes(int64_t Elements);

/// The modules PEFT's modules_to_save trains whole beside the adapters: the classification
/// or question-answering head G declares (PEFT's SEQ_CLS / TOKEN_CLS / QUESTION_ANS add
/// it), and Lora's list where set (an empty list: none, not even the head).
std::vector<std::string> modulesToSave(const Graph &G, const LoraSetup &Lora);

/// The linear modules of G's head that PEFT's `all-linear` would adapt and its task type
/// then wrap to train whole, which PEFT refuses (TOKEN_CLS's and QUESTION_ANS's head,
/// DistilBERT's pre_classifier under SEQ_CLS): applyLora leaves them out of all-linear,
/// and an emitted LoraConfig names them in exclude_modules. Empty without a task type.
std::vector<std::string> headLinearsPeftWouldAdapt(const Graph &G);

/// Whether ParamName is a parameter of one of Modules (its module, or a module holding it,
/// has a path that ends with one of them as a string, as PEFT matches modules_to_save);
/// false for the frozen originals (".original_module.") kept beside them.
bool inModulesToSave(llvm::StringRef ParamName, const std::vector<std::string> &Modules);

/// Returns a copy of G with LoRA adapters on the target linears, and a frozen original
/// beside each parameter of modulesToSave (ModulesToSaveWrapper's). Errors: no linear layer
/// matches the targets (the message lists the linear module names the model has).
llvm::Expected<Graph> applyLora(const Graph &G, const LoraSetup &Lora);

} // namespace trainmem

#endif
