// load_checkpoint: a model directory -> config + CPU tensors that view the memory-mapped weights files.
//   DIR/config.json + DIR/model.safetensors                     format "safetensors"
//   DIR/config.json + DIR/model.safetensors.index.json + shards  format "safetensors-sharded"
//   DIR/config.json + DIR/pytorch_model.bin                      format "pytorch_model.bin"
// (either config layout works with either weights format: names are normalised by canonical_tensor_name).
// Tensors are at::from_blob views of the maps (strided views for torch.save's views), each keeping its
// MappedFile alive through the deleter; a tensor whose bytes are not aligned to its element size is copied.
// Tying: a missing lm_head.weight, one sharing the embedding's storage, or any lm_head when the config says the
// embeddings are tied (what transformers and mamba_ssm do) -> tie_embeddings and no lm_head.weight tensor.
// Every tensor's shape is checked against the config (kernels.md §1a); missing, misshapen and unexpected
// tensors are errors naming the tensor and the file.
#include <ATen/Functions.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "mambaextend/checkpoint.h"
#include "mambaextend/error.h"
#include "mambaextend/log.h"

namespace mx {

namespace fs = std::filesystem;

const at::Tensor& Checkpoint::get(const std::string& name) const {
  const auto it = tensors.find(name);
  if (it == tensors.end()) throw CheckpointError(dir.string() + ": checkpoint has no tensor '" + name + "'");
  return it->second;
}

namespace {

constexpr uintmax_t kMaxJsonBytes = uintmax_t{16} << 20;

std::string read_small_file(const fs::path& p) {
  std::error_code ec;
  const uintmax_t n = fs::file_size(p, ec);
  if (ec) throw IoError(p.string() + ": cannot read: " + ec.message());
  if (n > kMaxJsonBytes) throw IoError(p.string() + ": " + std::to_string(n) + " bytes, too large for a JSON file");
  std::ifstream in(p, std::ios::binary);
  if (!in) throw IoError(p.string() + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) throw IoError(p.string() + ": read failed");
  return ss.str();
}

std::string sha256_of(const std::string& bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw Error("OpenSSL SHA-256 failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

at::ScalarType scalar_type(DType d) {
  switch (d) {
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::F64: return at::kDouble;
  }
  return at::kFloat;
}

// One tensor found in a weights file.
struct Found {
  TensorRecord rec;
  std::shared_ptr<MappedFile> file;
};

// The name a tensor would carry in the file (for messages about tensors that are not there).
std::string stored_name(const std::string& canonical, const ModelConfig& cfg) {
  if (canonical == "lm_head.weight") return canonical;
  if (canonical == "embedding.weight" && cfg.scheme == "hf") return "backbone.embeddings.weight";
  return "backbone." + canonical;
}

// Every tensor of the model and its shape, from the config (kernels.md §1a); vocab = rows of the embedding.
std::map<std::string, std::vector<int64_t>> expected_shapes(const ModelConfig& c, bool with_lm_head) {
  const int64_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, V = c.vocab_size;
  std::map<std::string, std::vector<int64_t>> m;
  m["embedding.weight"] = {V, D};
  m["norm_f.weight"] = {D};
  if (with_lm_head) m["lm_head.weight"] = {V, D};
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    const std::string x = p + "mixer.";
    m[p + "norm.weight"] = {D};
    m[x + "out_proj.weight"] = {D, E};
    if (c.use_bias) m[x + "out_proj.bias"] = {D};
    if (c.arch == Arch::Mamba1) {
      const int64_t R = c.dt_rank;
      m[x + "in_proj.weight"] = {2 * E, D};
      if (c.use_bias) m[x + "in_proj.bias"] = {2 * E};
      m[x + "conv1d.weight"] = {E, 1, K};
      if (c.use_conv_bias) m[x + "conv1d.bias"] = {E};
      m[x + "x_proj.weight"] = {R + 2 * N, E};
      m[x + "dt_proj.weight"] = {E, R};
      m[x + "dt_proj.bias"] = {E};
      m[x + "A_log"] = {E, N};
      m[x + "D"] = {E};
    } else {
      const int64_t H = c.n_heads, G = c.n_groups, C = c.conv_dim();
      m[x + "in_proj.weight"] = {2 * E + 2 * G * N + H, D};  // [z | x | B | C | dt]
      if (c.use_bias) m[x + "in_proj.bias"] = {2 * E + 2 * G * N + H};
      m[x + "conv1d.weight"] = {C, 1, K};
      if (c.use_conv_bias) m[x + "conv1d.bias"] = {C};
      m[x + "dt_bias"] = {H};
      m[x + "A_log"] = {H};
      m[x + "D"] = {H};
      m[x + "norm.weight"] = {E};
    }
  }
  return m;
}

std::string config_summary(const ModelConfig& c) {
  std::string s = std::string(arch_name(c.arch)) + ": n_layer=" + std::to_string(c.n_layer) +
                  ", d_model=" + std::to_string(c.d_model) + ", d_inner=" + std::to_string(c.d_inner) +
                  ", d_state=" + std::to_string(c.d_state) + ", d_conv=" + std::to_string(c.d_conv);
  if (c.arch == Arch::Mamba1) return s + ", dt_rank=" + std::to_string(c.dt_rank);
  return s + ", n_heads=" + std::to_string(c.n_heads) + ", n_groups=" + std::to_string(c.n_groups);
}

// Adds the tensors of one weights file under their canonical names; names that are no part of a Mamba LM
// are collected in `unexpected`.
void add_records(const std::shared_ptr<MappedFile>& file, std::vector<TensorRecord> recs,
                 std::map<std::string, Found>& found, std::vector<std::string>& unexpected) {
  for (auto& r : recs) {
    const std::string canon = canonical_tensor_name(r.name);
    if (canon.empty()) {
      unexpected.push_back(r.name);
      continue;
    }
    const auto it = found.find(canon);
    if (it != found.end())
      throw CheckpointError(file->path().string() + ": tensors '" + it->second.rec.name + "' and '" + r.name +
                            "' both stand for " + canon);
    found.emplace(canon, Found{std::move(r), file});
  }
}

[[noreturn]] void throw_unexpected(const std::string& where, std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  std::string list;
  for (size_t i = 0; i < names.size() && i < 8; ++i) list += (i ? ", " : "") + names[i];
  if (names.size() > 8) list += ", ... (" + std::to_string(names.size()) + " in all)";
  throw CheckpointError(where + ": unexpected tensor(s) not part of this " + "model: " + list);
}

at::Tensor make_tensor(const Found& f) {
  const TensorRecord& r = f.rec;
  const auto opts = at::TensorOptions().dtype(scalar_type(r.dtype)).device(at::kCPU);
  std::vector<int64_t> strides = r.strides;
  if (strides.empty()) {
    strides.assign(r.shape.size(), 1);
    for (size_t d = r.shape.size(); d-- > 1;) strides[d - 1] = strides[d] * r.shape[d];
  }
  uint8_t* ptr = const_cast<uint8_t*>(f.file->data()) + r.offset;
  const size_t esize = dtype_size(r.dtype);
  if (r.nbytes == 0 || reinterpret_cast<uintptr_t>(ptr) % esize != 0) {
    // Misaligned (or empty): copy the bytes the view spans into an aligned buffer and view that.
    at::Tensor buf = at::empty({static_cast<int64_t>(r.nbytes / esize)}, opts);
    if (r.nbytes > 0) std::memcpy(buf.data_ptr(), ptr, r.nbytes);
    return buf.as_strided(r.shape, strides, 0);
  }
  std::shared_ptr<MappedFile> keep = f.file;
  return at::from_blob(
      ptr, r.shape, strides, [keep](void*) {}, opts);
}

bool same_bytes(const Found& a, const Found& b) {
  if (a.rec.dtype != b.rec.dtype || a.rec.shape != b.rec.shape || a.rec.nbytes != b.rec.nbytes ||
      a.rec.strides != b.rec.strides)
    return false;
  return std::memcmp(a.file->data() + a.rec.offset, b.file->data() + b.rec.offset, a.rec.nbytes) == 0;
}

}  // namespace

Checkpoint load_checkpoint(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw IoError(dir.string() + ": not a model directory");
  Checkpoint ck;
  ck.dir = dir;
  const fs::path cfg_path = dir / "config.json";
  if (!fs::exists(cfg_path)) throw IoError(cfg_path.string() + ": missing (every model directory needs config.json)");
  const std::string cfg_text = read_small_file(cfg_path);
  ck.config = parse_model_config(cfg_text, cfg_path.string());
  ck.config_sha256 = sha256_of(cfg_text);
  ModelConfig& cfg = ck.config;

  // ---- find the weights and describe every tensor -------------------------------------------------------
  std::map<std::string, Found> found;  // canonical name ->
  std::vector<std::string> unexpected;
  std::string where;  // the file named in messages about the set of tensors
  if (fs::exists(dir / "model.safetensors")) {
    ck.format = "safetensors";
    where = (dir / "model.safetensors").string();
    auto file = std::make_shared<MappedFile>(dir / "model.safetensors");
    add_records(file, read_safetensors_header(file->data(), file->size(), where), found, unexpected);
  } else if (fs::exists(dir / "model.safetensors.index.json")) {
    ck.format = "safetensors-sharded";
    where = (dir / "model.safetensors.index.json").string();
    const auto index = read_safetensors_index(read_small_file(where), where);
    std::set<std::string> shards;
    for (const auto& [name, shard] : index) shards.insert(shard);
    for (const std::string& shard : shards) {
      const fs::path sp = dir / shard;
      if (!fs::exists(sp)) throw IoError(sp.string() + ": shard listed in " + where + " is missing");
      auto file = std::make_shared<MappedFile>(sp);
      std::vector<TensorRecord> recs = read_safetensors_header(file->data(), file->size(), sp.string());
      std::set<std::string> in_file;
      for (const auto& r : recs) {
        const auto it = index.find(r.name);
        if (it == index.end() || it->second != shard)
          throw CheckpointError(sp.string() + ": tensor '" + r.name + "' is not listed for this shard in " + where);
        in_file.insert(r.name);
      }
      for (const auto& [name, s] : index)
        if (s == shard && !in_file.count(name))
          throw CheckpointError(sp.string() + ": missing tensor '" + name + "' (listed for this shard in " + where +
                                ")");
      add_records(file, std::move(recs), found, unexpected);
    }
  } else if (fs::exists(dir / "pytorch_model.bin")) {
    ck.format = "pytorch_model.bin";
    where = (dir / "pytorch_model.bin").string();
    auto file = std::make_shared<MappedFile>(dir / "pytorch_model.bin");
    add_records(file, read_torch_zip(file->data(), file->size(), where), found, unexpected);
  } else {
    throw IoError(dir.string() +
                  ": no weights: expected model.safetensors, model.safetensors.index.json or "
                  "pytorch_model.bin");
  }
  if (!unexpected.empty()) throw_unexpected(where, unexpected);

  // ---- vocabulary, from the embedding's rows -------------------------------------------------------------
  const auto emb_it = found.find("embedding.weight");
  if (emb_it == found.end())
    throw CheckpointError(where + ": missing tensor '" + stored_name("embedding.weight", cfg) + "'");
  const Found& emb = emb_it->second;
  if (emb.rec.shape.size() != 2 || emb.rec.shape[1] != cfg.d_model)
    throw CheckpointError(where + ": tensor '" + emb.rec.name + "' has shape " + shape_str(emb.rec.shape) +
                          ", expected [vocab, " + std::to_string(cfg.d_model) + "] (d_model from " + cfg_path.string() +
                          ")");
  const int64_t rows = emb.rec.shape[0];
  if (cfg.scheme == "hf") {
    if (rows != cfg.vocab_size_unpadded)
      throw CheckpointError(where + ": tensor '" + emb.rec.name + "' has " + std::to_string(rows) + " rows, but " +
                            cfg_path.string() + " says vocab_size " + std::to_string(cfg.vocab_size_unpadded));
  } else {
    if (rows < cfg.vocab_size_unpadded)
      throw CheckpointError(where + ": tensor '" + emb.rec.name + "' has " + std::to_string(rows) +
                            " rows, fewer than vocab_size " + std::to_string(cfg.vocab_size_unpadded) + " in " +
                            cfg_path.string());
    if (rows != cfg.vocab_size)
      log::warn(where + ": embedding has " + std::to_string(rows) + " rows, expected vocab_size " +
                std::to_string(cfg.vocab_size_unpadded) + " padded to " + std::to_string(cfg.vocab_size) + "; using " +
                std::to_string(rows));
  }
  cfg.vocab_size = rows;

  // ---- tied or untied LM head ---------------------------------------------------------------------------
  const auto head_it = found.find("lm_head.weight");
  if (head_it == found.end()) {
    if (!cfg.tie_embeddings)
      throw CheckpointError(where + ": missing tensor 'lm_head.weight' (" + cfg_path.string() +
                            " says the embeddings are not tied)");
  } else {
    const Found& head = head_it->second;
    const bool shared = !head.rec.storage_key.empty() && head.rec.storage_key == emb.rec.storage_key &&
                        head.file == emb.file && head.rec.offset == emb.rec.offset && head.rec.shape == emb.rec.shape &&
                        head.rec.strides == emb.rec.strides;
    if (shared || cfg.tie_embeddings) {
      if (!shared && !same_bytes(head, emb))
        log::warn(where + ": lm_head.weight differs from the embedding but " + cfg_path.string() +
                  " ties them; the embedding is used (as transformers and mamba_ssm do)");
      found.erase(head_it);
      cfg.tie_embeddings = true;
    } else {
      cfg.tie_embeddings = false;
    }
  }

  // ---- every shape against the config --------------------------------------------------------------------
  const auto expected = expected_shapes(cfg, !cfg.tie_embeddings);
  for (const auto& [name, shape] : expected) {
    const auto it = found.find(name);
    if (it == found.end())
      throw CheckpointError(where + ": missing tensor '" + stored_name(name, cfg) + "' (" + config_summary(cfg) + ")");
    if (it->second.rec.shape != shape)
      throw CheckpointError(it->second.file->path().string() + ": tensor '" + it->second.rec.name + "' has shape " +
                            shape_str(it->second.rec.shape) + ", expected " + shape_str(shape) + " from " +
                            cfg_path.string() + " (" + config_summary(cfg) + ")");
  }
  for (const auto& [name, f] : found)
    if (!expected.count(name)) unexpected.push_back(f.rec.name);
  if (!unexpected.empty()) throw_unexpected(where, unexpected);

  // ---- tensors, parameter count, dtype --------------------------------------------------------------------
  std::map<DType, int64_t> by_dtype;
  for (const auto& [name, f] : found) {
    at::Tensor t = make_tensor(f);
    if (t.numel() > 0 && !at::isfinite(t).all().item<bool>()) {  // loadable, but the outputs will not be finite
      const int64_t bad = at::logical_not(at::isfinite(t)).sum().item<int64_t>();
      log::warn(f.file->path().string() + ": tensor '" + f.rec.name + "' has " + std::to_string(bad) + " of " +
                std::to_string(t.numel()) + " values NaN or infinite; outputs will not be finite (calibrate refuses "
                "a non-finite objective)");
    }
    ck.n_params += t.numel();
    by_dtype[f.rec.dtype] += t.numel();
    ck.tensors.emplace(name, std::move(t));
  }
  int64_t best = -1;
  for (const auto& [d, n] : by_dtype)
    if (n > best) {
      best = n;
      ck.dtype = d;
    }
  return ck;
}

}  // namespace mx
