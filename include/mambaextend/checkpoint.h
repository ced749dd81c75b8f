// Checkpoint loading with no Python at run time.
//   Hugging Face layout:  config.json + model.safetensors, or shards + model.safetensors.index.json
//   state-spaces layout:  config.json + pytorch_model.bin (torch.save zip; restricted unpickler)
// The format readers (safetensors.cpp, pickle_zip.cpp) are torch-free and describe each tensor as a
// TensorRecord (dtype, shape, byte range in a file); loader.cpp memory-maps the files and turns records
// into tensors, normalises names (name_map.cpp) and cross-checks every shape against the config.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mambaextend/config.h"

namespace mx {

enum class DType { F32, F16, BF16, F64 };
const char* dtype_name(DType d);  // "float32" | "float16" | "bfloat16" | "float64"
size_t dtype_size(DType d);

// One tensor inside a weights file: `offset` is the byte offset from the start of the file.
struct TensorRecord {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;    // sizes
  std::vector<int64_t> strides;  // element strides; empty = contiguous
  uint64_t offset = 0;
  uint64_t nbytes = 0;           // bytes the tensor spans in the file
  std::string storage_key;       // pytorch_model.bin: the storage it lives in (tied weights share one)
};

// A read-only memory map of a whole file; tensors made from it keep it alive.
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);  // throws IoError
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// safetensors: reads the header of one file (bounds, overlaps, dtypes, shapes all validated).
std::vector<TensorRecord> read_safetensors_header(const uint8_t* data, uint64_t size, const std::string& where);
// model.safetensors.index.json: tensor name -> shard file name (validated: relative names only).
std::map<std::string, std::string> read_safetensors_index(const std::string& json_text, const std::string& where);
// pytorch_model.bin (torch.save zip, uncompressed entries): the state dict's tensors, through a restricted
// unpickler that accepts only collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch.*Storage.
std::vector<TensorRecord> read_torch_zip(const uint8_t* data, uint64_t size, const std::string& where);

// Canonical tensor names are state-spaces names without the "backbone." prefix:
//   embedding.weight, layers.{i}.norm.weight, layers.{i}.mixer.<...>, norm_f.weight, lm_head.weight
// HF's "backbone.embeddings.weight" becomes "embedding.weight". Returns "" for names that are not
// part of a Mamba LM (the caller reports them).
std::string canonical_tensor_name(const std::string& name);

struct Checkpoint {
  std::filesystem::path dir;
  ModelConfig config;
  std::map<std::string, at::Tensor> tensors;  // canonical name -> tensor as stored (CPU, file dtype)
  // (views of a private memory map: writing to them never changes the file; "lm_head.weight" is present
  //  only when the head is untied, i.e. config.tie_embeddings == false)
  std::string format;  // "safetensors" | "safetensors-sharded" | "pytorch_model.bin"
  DType dtype = DType::F32;  // dtype of the stored weights (the most common one)
  int64_t n_params = 0;      // parameters, counting a tied embedding once
  std::string config_sha256;

  const at::Tensor& get(const std::string& name) const;  // throws CheckpointError naming the tensor
};

// Loads a model directory. Throws ConfigError / CheckpointError / IoError with the file and tensor named.
Checkpoint load_checkpoint(const std::filesystem::path& dir);

}  // namespace mx
