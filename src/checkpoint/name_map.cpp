// Tensor-name normalisation between the two checkpoint schemes (kernels.md §1a, §1b):
//   state-spaces  backbone.embedding.weight,  backbone.layers.{i}.*, backbone.norm_f.weight, lm_head.weight
//   Hugging Face  backbone.embeddings.weight, backbone.layers.{i}.*, backbone.norm_f.weight, lm_head.weight
// Canonical names drop "backbone." and use "embedding.weight". Only the names a Mamba LM can have pass; the
// mixer's own tensor names (layers.{i}.mixer.<...>) pass unchanged and are checked against the config by the
// loader, which also reports every name mapped to "".
#include <cctype>
#include <string>

#include "mambaextend/checkpoint.h"

namespace mx {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// "layers.{i}.<rest>" with i a decimal index without leading zeros: returns <rest>, or "" if not of that form.
std::string after_layer_index(const std::string& s) {
  const std::string head = "layers.";
  if (!starts_with(s, head)) return "";
  size_t i = head.size();
  const size_t digits_begin = i;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  const size_t n_digits = i - digits_begin;
  if (n_digits == 0 || n_digits > 9 || (n_digits > 1 && s[digits_begin] == '0')) return "";
  if (i >= s.size() || s[i] != '.') return "";
  return s.substr(i + 1);
}

}  // namespace

std::string canonical_tensor_name(const std::string& name) {
  if (name == "lm_head.weight") return name;
  std::string s = starts_with(name, "backbone.") ? name.substr(9) : name;
  if (s == "embeddings.weight" || s == "embedding.weight") return "embedding.weight";
  if (s == "norm_f.weight") return s;
  const std::string rest = after_layer_index(s);
  if (rest == "norm.weight") return s;
  if (starts_with(rest, "mixer.") && rest.size() > 6) return s;
  return "";
}

}  // namespace mx
