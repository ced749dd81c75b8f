// Checkpoint loading: safetensors / torch.save readers, name normalisation, load_checkpoint and
// `mambaextend inspect` (config.json parsing: test_config.cpp). Expected values come from
// tests/oracle/oracle_checkpoints.py (torch, safetensors and transformers wrote the files and computed the numbers) and
// from the organisms' READMEs; hostile inputs are either oracle fixtures ($MX_FIXTURES/checkpoints/bad, cases.json) or
// bytes built here by hand.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>

#include "fixtures.h"
#include "mambaextend/checkpoint.h"
#include "mambaextend/error.h"
#include "temp_dir.h"

namespace mx {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path fx() { return test::fixture_dir("checkpoints"); }

// Runs f, which must throw an mx::Error of the named type; returns the message.
std::string error_of(const std::function<void()>& f, const std::string& type) {
  try {
    f();
  } catch (const Error& e) {
    const bool ok = (type == "ConfigError" && dynamic_cast<const ConfigError*>(&e)) ||
                    (type == "CheckpointError" && dynamic_cast<const CheckpointError*>(&e)) ||
                    (type == "IoError" && dynamic_cast<const IoError*>(&e)) || type == "Error";
    EXPECT_TRUE(ok) << "expected " << type << ", got another mx::Error: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected " << type << ", nothing was thrown";
  return "";
}

// Copies a fixture directory into a scratch directory, to be damaged there.
fs::path copy_into(const test::TempDir& tmp, const fs::path& src) {
  const fs::path d = tmp.path() / src.filename();
  fs::copy(src, d, fs::copy_options::recursive);
  return d;
}

void write_bytes(const fs::path& p, const std::string& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

// ---- names -------------------------------------------------------------------------------------------------
TEST(NameMap, BothSchemes) {
  EXPECT_EQ(canonical_tensor_name("backbone.embeddings.weight"), "embedding.weight");
  EXPECT_EQ(canonical_tensor_name("backbone.embedding.weight"), "embedding.weight");
  EXPECT_EQ(canonical_tensor_name("backbone.layers.11.mixer.A_log"), "layers.11.mixer.A_log");
  EXPECT_EQ(canonical_tensor_name("layers.0.norm.weight"), "layers.0.norm.weight");
  EXPECT_EQ(canonical_tensor_name("backbone.norm_f.weight"), "norm_f.weight");
  EXPECT_EQ(canonical_tensor_name("lm_head.weight"), "lm_head.weight");
  for (const char* bad : {"backbone.layers.01.mixer.D", "backbone.layers.x.mixer.D", "backbone.layers.0.mixer.",
                          "backbone.layers.0.attn.weight", "model.embed_tokens.weight", "backbone.lm_head.weight",
                          "backbone.layers.0.norm.bias", ""})
    EXPECT_EQ(canonical_tensor_name(bad), "") << bad;
}

// ---- safetensors headers built by hand ---------------------------------------------------------------------
std::string safetensors_bytes(const std::string& header, size_t data_bytes) {
  std::string b(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return b + header + std::string(data_bytes, '\0');
}

std::string st_error(const std::string& header, size_t data_bytes) {
  const std::string b = safetensors_bytes(header, data_bytes);
  return error_of([&] { read_safetensors_header(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "w.st"); },
                  "CheckpointError");
}

TEST(Safetensors, ValidHeader) {
  const std::string b = safetensors_bytes(
      R"({"__metadata__": {"format": "pt"}, "a": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
          "b": {"dtype": "F64", "shape": [], "data_offsets": [16, 24]},
          "e": {"dtype": "F32", "shape": [0, 4], "data_offsets": [12, 12]}})",
      24);
  const auto recs = read_safetensors_header(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "w.st");
  ASSERT_EQ(recs.size(), 3u);
  const uint64_t base = b.size() - 24;
  std::map<std::string, TensorRecord> m;
  for (const auto& r : recs) m[r.name] = r;
  EXPECT_EQ(m["a"].dtype, DType::BF16);
  EXPECT_EQ(m["a"].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(m["a"].offset, base);
  EXPECT_EQ(m["a"].nbytes, 12u);
  EXPECT_EQ(m["b"].offset, base + 16);
  EXPECT_TRUE(m["b"].shape.empty());
  EXPECT_EQ(m["e"].nbytes, 0u);
}

TEST(Safetensors, HostileHeaders) {
  struct Case {
    std::string header;
    size_t data;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      {R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
           "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
       24,
       {"'a'", "'b'", "overlap"}},
      {R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8, {"'a'", "past the end"}},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8, {"'a'", "begin > end"}},
      {R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8, {"'a'", "expected 12"}},
      {R"({"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})", 8, {"'a'", "I64"}},
      {R"({"a": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 8]}})", 8, {"'a'", "overflow"}},
      {R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}})", 8, {"'a'", "non-negative"}},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 18446744073709551615]}})", 8, {"'a'"}},
      {R"({"a": {"dtype": "F32", "shape": [1]}})", 8, {"'a'", "data_offsets"}},
      {R"({"a": 3})", 8, {"'a'"}},
      {R"([1])", 8, {"JSON object"}},
      {R"({"a": )", 8, {"malformed"}},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 64E6528]}})", 8, {"malformed"}},
  };
  for (const auto& c : cases) {
    const std::string msg = st_error(c.header, c.data);
    EXPECT_NE(msg.find("w.st"), std::string::npos) << msg;
    for (const auto& w : c.want) EXPECT_NE(msg.find(w), std::string::npos) << "expected '" << w << "' in: " << msg;
  }
  // header length beyond the file, and a file shorter than the length field
  std::string b = safetensors_bytes("{}", 0);
  b[0] = 100;
  EXPECT_NE(error_of([&] { read_safetensors_header(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "w.st"); },
                     "CheckpointError")
                .find("truncated"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_safetensors_header(reinterpret_cast<const uint8_t*>(b.data()), 5, "w.st"); },
                     "CheckpointError")
                .find("truncated"),
            std::string::npos);
}

TEST(Safetensors, NestingAndControlCharacters) {
  const int depth = 1000000;
  const std::string deep = std::string(depth, '[') + "1" + std::string(depth, ']');
  std::string msg = st_error(R"({"a": {"dtype": "F32", "shape": )" + deep + R"(, "data_offsets": [0, 4]}})", 4);
  EXPECT_NE(msg.find("'a'"), std::string::npos) << msg.substr(0, 300);
  EXPECT_LT(msg.size(), 600u);
  msg = st_error(R"({"a\nb": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 4);
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_NE(msg.find("control"), std::string::npos) << msg;
}

TEST(Safetensors, IndexRejectsPathsOutsideTheDirectory) {
  const auto ok = read_safetensors_index(R"({"metadata": {}, "weight_map": {"a": "m-1.safetensors"}})", "i.json");
  EXPECT_EQ(ok.at("a"), "m-1.safetensors");
  for (const char* bad : {R"({"weight_map": {"a": "/etc/passwd"}})", R"({"weight_map": {"a": "../x.safetensors"}})",
                          R"({"weight_map": {"a": "sub/../../x"}})", R"({"weight_map": {"a": ""}})",
                          R"({"weight_map": {"a": 3}})", R"({"nothing": 1})", R"({"weight_map": )"}) {
    const std::string msg = error_of([&] { read_safetensors_index(bad, "i.json"); }, "CheckpointError");
    EXPECT_NE(msg.find("i.json"), std::string::npos) << msg;
  }
}

// ---- a minimal stored-zip writer and pickle builder for hand-made torch.save archives ------------------------
std::string le32(uint64_t v) { return std::string{char(v), char(v >> 8), char(v >> 16), char(v >> 24)}; }
std::string le16(uint64_t v) { return std::string{char(v), char(v >> 8)}; }

std::string stored_zip(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out, central;
  for (const auto& [name, data] : files) {
    const uint64_t local = out.size();
    out += le32(0x04034b50) + le16(20) + le16(0) + le16(0) + le32(0) + le32(0) + le32(data.size()) + le32(data.size()) +
           le16(name.size()) + le16(0) + name + data;
    central += le32(0x02014b50) + le16(20) + le16(20) + le16(0) + le16(0) + le32(0) + le32(0) + le32(data.size()) +
               le32(data.size()) + le16(name.size()) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0) + le32(local) +
               name;
  }
  const uint64_t cd = out.size();
  out += central;
  out += le32(0x06054b50) + le16(0) + le16(0) + le16(files.size()) + le16(files.size()) + le32(central.size()) +
         le32(cd) + le16(0);
  return out;
}

std::string bu(const std::string& s) { return "X" + le32(s.size()) + s; }  // BINUNICODE
std::string bi(uint32_t v) { return "J" + le32(v); }                       // BININT
const std::string kOrderedDictCall = "ccollections\nOrderedDict\n)R";

// {"w": tensor} with the tensor a view (offset, sizes, strides) of storage "0" of `numel` floats.
std::string one_tensor_pickle(uint32_t numel, uint32_t offset, const std::vector<uint32_t>& sizes,
                              const std::vector<uint32_t>& strides, bool as_parameter = false) {
  std::string t = "ctorch._utils\n_rebuild_tensor_v2\n((" + bu("storage") + "ctorch\nFloatStorage\n" + bu("0") +
                  bu("cpu") + bi(numel) + "tQ" + bi(offset) + "(";
  for (auto s : sizes) t += bi(s);
  t += "t(";
  for (auto s : strides) t += bi(s);
  t += "t\x89" + kOrderedDictCall + "tR";
  if (as_parameter) t = "ctorch._utils\n_rebuild_parameter\n(" + t + "\x89" + kOrderedDictCall + "tR";
  return "\x80\x02" + kOrderedDictCall + "(" + bu("w") + t + "u.";
}

std::vector<TensorRecord> read_zip_bytes(const std::string& z) {
  return read_torch_zip(reinterpret_cast<const uint8_t*>(z.data()), z.size(), "hand.bin");
}

TEST(TorchZip, HandBuiltArchive) {
  const std::string storage(10 * 4, '\x01');
  for (bool param : {false, true}) {
    const auto z = stored_zip({{"archive/data.pkl", one_tensor_pickle(10, 2, {2, 3}, {1, 2}, param)},
                               {"archive/byteorder", "little"},
                               {"archive/data/0", storage}});
    const auto recs = read_zip_bytes(z);
    ASSERT_EQ(recs.size(), 1u);
    EXPECT_EQ(recs[0].name, "w");
    EXPECT_EQ(recs[0].shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(recs[0].strides, (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(recs[0].storage_key, "0");
    EXPECT_EQ(recs[0].offset, z.find(storage) + 2 * 4);   // element offset 2 of float storage "0"
    EXPECT_EQ(recs[0].nbytes, (1 + 1 * 1 + 2 * 2) * 4u);  // elements 2..7
  }
}

TEST(TorchZip, HostileArchives) {
  const std::string storage(10 * 4, '\0');
  const auto zip = [&](const std::string& pkl, const std::string& data = std::string(40, '\0')) {
    return stored_zip({{"archive/data.pkl", pkl}, {"archive/data/0", data}});
  };
  struct Case {
    std::string bytes, want;
  };
  std::string deep = "\x80\x02]";  // 200k nested lists through the memo: harmless, no recursion anywhere
  for (uint32_t i = 0; i < 200000; ++i) deep += "]r" + le32(i) + "aj" + le32(i);
  deep += ".";
  const std::vector<Case> cases = {
      {zip(one_tensor_pickle(10, 5, {2, 3}, {3, 1})), "reaches element"},              // view past the storage
      {zip(one_tensor_pickle(10, 0, {10}, {1}), std::string(20, '\0')), "truncated"},  // storage entry too short
      {zip(one_tensor_pickle(10, 0, {10}, {1}).substr(0, 60)), "truncated"},           // pickle cut short
      {zip("\x80\x02X" + le32(0xffffffffu) + "abc."), "past the end"},                 // lying string length
      {zip("\x80\x02}(" + bu("w") + "K\x01u."), "not a tensor"},
      {zip("\x80\x02}(" + bu("a\nb") + "K\x01u."), "a\\x0ab"},  // names stay on one line
      {zip("\x80\x02]."), "not a dict"},
      {zip(deep), "not a dict"},
      {zip("\x80\x02h\x07."), "memo key 7"},
      {zip("\x80\x02s."), "underflow"},
      {zip("\x80\x02\x8a\x09" + std::string(9, '\x01') + "."), "64 bits"},
      {zip("\x80\x02I1\n."), "opcode 0x49"},  // text INT: not something torch.save writes
      {zip("\x80\x02"
           "c__builtin__\ngetattr\n."),
       "__builtin__.getattr"},
      {zip("\x80\x02"
           "ctorch\nLongStorage\n."),
       "torch.LongStorage"},
      {zip("\x80\x02"
           "ctorch._utils\n_rebuild_tensor\n."),
       "torch._utils._rebuild_tensor,"},
      {stored_zip({{"archive/data.pkl", one_tensor_pickle(10, 0, {10}, {1})}}), "archive/data/0"},
      {stored_zip({{"archive/data.pkl", "\x80\x02}."}, {"archive/byteorder", "big"}}), "byteorder"},
      {stored_zip({{"archive/x.pkl", "\x80\x02}."}}), "data.pkl"},
      {std::string(30, '\0'), "end-of-central-directory"},
  };
  for (const auto& c : cases) {
    const std::string msg = error_of([&] { read_zip_bytes(c.bytes); }, "CheckpointError");
    EXPECT_NE(msg.find("hand.bin"), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.want), std::string::npos) << "expected '" << c.want << "' in: " << msg;
  }
  // An empty state dict is a valid archive with no tensors.
  EXPECT_TRUE(read_zip_bytes(zip("\x80\x02" + kOrderedDictCall + ".")).empty());
}

// ---- the two bundled organisms -----------------------------------------------------------------------------
void check_organism(const std::string& arch, int64_t readme_params) {
  const json ref = test::read_json(fx() / "organisms.json").at(arch);
  const Checkpoint ck = load_checkpoint(test::source_dir() / ref.at("dir").get<std::string>());
  EXPECT_EQ(ck.format, "safetensors-sharded");
  EXPECT_EQ(ck.dtype, DType::BF16);
  EXPECT_EQ(ck.n_params, readme_params);
  EXPECT_EQ(ck.n_params, ref.at("n_params").get<int64_t>());
  EXPECT_EQ(ck.config_sha256, ref.at("config_sha256").get<std::string>());
  EXPECT_TRUE(ck.config.tie_embeddings);
  EXPECT_EQ(ck.tensors.count("lm_head.weight"), 0u);
  EXPECT_EQ(ck.tensors.size(), ref.at("tensors").size());
  for (const auto& [name, r] : ref.at("tensors").items()) {
    const at::Tensor& t = ck.get(name);
    EXPECT_EQ(t.sizes().vec(), r.at("shape").get<std::vector<int64_t>>()) << name;
    EXPECT_EQ(t.scalar_type(), at::kBFloat16) << name;
    const at::Tensor d = t.to(at::kDouble);
    const double abs_sum = r.at("abs_sum").get<double>();
    EXPECT_NEAR(d.sum().item<double>(), r.at("sum").get<double>(), 1e-9 * abs_sum + 1e-12) << name;
    EXPECT_NEAR(d.abs().sum().item<double>(), abs_sum, 1e-9 * abs_sum + 1e-12) << name;
  }
}

TEST(OrganismCheckpoints, Mamba1) {
  check_organism("mamba1", 7368832);  // assets/models/organism-mamba1-7m/README.md
  const auto c = load_checkpoint(test::source_dir() / "assets/models/organism-mamba1-7m").config;
  EXPECT_EQ(c.arch, Arch::Mamba1);
  EXPECT_EQ(c.n_layer, 8);
  EXPECT_EQ(c.d_model, 128);
  EXPECT_EQ(c.d_inner, 256);
  EXPECT_EQ(c.d_state, 16);
  EXPECT_EQ(c.dt_rank, 8);
  EXPECT_EQ(c.d_conv, 4);
  EXPECT_EQ(c.vocab_size, 50280);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
}

TEST(OrganismCheckpoints, Mamba2) {
  check_organism("mamba2", 7377120);  // assets/models/organism-mamba2-7m/README.md
  const auto c = load_checkpoint(test::source_dir() / "assets/models/organism-mamba2-7m").config;
  EXPECT_EQ(c.arch, Arch::Mamba2);
  EXPECT_EQ(c.n_layer, 8);
  EXPECT_EQ(c.d_model, 128);
  EXPECT_EQ(c.d_inner, 256);
  EXPECT_EQ(c.d_state, 64);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.n_groups, 1);
  EXPECT_EQ(c.chunk_size, 128);
  EXPECT_EQ(c.vocab_size, 50288);
  EXPECT_EQ(c.dt_limit_min, 0.0);
  EXPECT_TRUE(std::isinf(c.dt_limit_max));
}

// ---- oracle-written checkpoints: values equal what torch / transformers saved --------------------------------
void check_good(const fs::path& dir) {
  SCOPED_TRACE(dir.string());
  const json e = test::read_json(dir / "expected.json");
  const auto expected = test::read_tensors(dir / "expected.safetensors");
  const Checkpoint ck = load_checkpoint(dir);
  const ModelConfig& c = ck.config;
  EXPECT_EQ(arch_name(c.arch), e.at("arch").get<std::string>());
  EXPECT_EQ(c.n_layer, e.at("n_layer").get<int64_t>());
  EXPECT_EQ(c.d_model, e.at("d_model").get<int64_t>());
  EXPECT_EQ(c.d_inner, e.at("d_inner").get<int64_t>());
  EXPECT_EQ(c.d_state, e.at("d_state").get<int64_t>());
  EXPECT_EQ(c.d_conv, e.at("d_conv").get<int64_t>());
  EXPECT_EQ(c.vocab_size, e.at("vocab_size").get<int64_t>());
  EXPECT_EQ(c.vocab_size_unpadded, e.at("vocab_size_unpadded").get<int64_t>());
  EXPECT_EQ(c.tie_embeddings, e.at("tied").get<bool>());
  EXPECT_EQ(c.scheme, e.at("scheme").get<std::string>());
  if (c.arch == Arch::Mamba1) {
    EXPECT_EQ(c.dt_rank, e.at("dt_rank").get<int64_t>());
    EXPECT_EQ(c.use_bias, e.at("use_bias").get<bool>());
    EXPECT_EQ(c.use_conv_bias, e.at("use_conv_bias").get<bool>());
  } else {
    EXPECT_EQ(c.n_heads, e.at("n_heads").get<int64_t>());
    EXPECT_EQ(c.head_dim, e.at("head_dim").get<int64_t>());
    EXPECT_EQ(c.n_groups, e.at("n_groups").get<int64_t>());
    EXPECT_EQ(c.chunk_size, e.at("chunk_size").get<int64_t>());
    EXPECT_TRUE(std::isinf(c.dt_limit_max));
  }
  EXPECT_EQ(dtype_name(ck.dtype), e.at("dtype").get<std::string>());
  EXPECT_EQ(ck.format, e.at("format").get<std::string>());
  EXPECT_EQ(ck.n_params, e.at("n_params").get<int64_t>());
  EXPECT_EQ(ck.config_sha256, e.at("config_sha256").get<std::string>());
  ASSERT_EQ(ck.tensors.size(), expected.size());
  for (const auto& [name, want] : expected) {
    const at::Tensor& got = ck.get(name);
    EXPECT_STREQ(c10::toString(got.scalar_type()), c10::toString(e.at("dtype") == "float32"   ? at::kFloat
                                                                 : e.at("dtype") == "float16" ? at::kHalf
                                                                                              : at::kBFloat16))
        << name;
    EXPECT_EQ(got.sizes(), want.sizes()) << name;
    EXPECT_TRUE(at::equal(got.to(at::kDouble), want)) << name;  // fp16 / bf16 -> fp64 is exact
  }
}

TEST(Checkpoints, OracleWritten) {
  int n = 0;
  for (const auto& d : fs::directory_iterator(fx() / "good")) {
    check_good(d.path());
    ++n;
  }
  EXPECT_EQ(n, 5);
}

TEST(Checkpoints, PickleViewsAreStridedViewsOfTheMap) {
  const Checkpoint ck = load_checkpoint(fx() / "good/ss_m1_tied_fp32");
  const at::Tensor& w = ck.get("layers.0.mixer.out_proj.weight");  // saved as a transposed view
  EXPECT_FALSE(w.is_contiguous());
  EXPECT_EQ(w.strides().vec(), (std::vector<int64_t>{1, 16}));
  // D and A_log of layer 0 share one storage: D first, A_log right after it
  const at::Tensor& D = ck.get("layers.0.mixer.D");
  const at::Tensor& A = ck.get("layers.0.mixer.A_log");
  EXPECT_EQ(static_cast<const char*>(A.data_ptr()) - static_cast<const char*>(D.data_ptr()), 32 * 4);
  // Tensors outlive their Checkpoint (they hold the map).
  at::Tensor keep;
  {
    const Checkpoint tmp = load_checkpoint(fx() / "good/ss_m1_tied_fp32");
    keep = tmp.get("embedding.weight");
  }
  EXPECT_TRUE(at::equal(keep, ck.get("embedding.weight")));
}

TEST(Checkpoints, Zip64EndRecord) {
  // torch.save also writes a ZIP64 end record; force the reader through it by saturating the classic one.
  test::TempDir tmp("ckpt_zip64");
  const fs::path d = copy_into(tmp, fx() / "good/ss_m1_untied_fp16");
  std::string b = test::read_file(d / "pytorch_model.bin");
  const size_t eocd = b.rfind(le32(0x06054b50));
  ASSERT_NE(eocd, std::string::npos);
  b.replace(eocd + 8, 12, std::string(12, '\xff'));
  write_bytes(d / "pytorch_model.bin", b);
  check_good(d);
}

TEST(Checkpoints, BadOracleFixtures) {
  const json cases = test::read_json(fx() / "bad/cases.json");
  ASSERT_GE(cases.size(), 12u);
  for (const auto& c : cases) {
    const std::string name = c.at("name").get<std::string>();
    const std::string msg = error_of([&] { load_checkpoint(fx() / "bad" / name); }, c.at("error").get<std::string>());
    EXPECT_NE(msg.find(name), std::string::npos) << "the message should name the file: " << msg;
    for (const auto& frag : c.at("contains"))
      EXPECT_NE(msg.find(frag.get<std::string>()), std::string::npos)
          << name << ": expected '" << frag.get<std::string>() << "' in: " << msg;
  }
}

TEST(Checkpoints, TruncatedAndCorruptFiles) {
  test::TempDir tmp("ckpt_truncated");
  // safetensors cut in half: the header survives, the data does not
  const fs::path hf = copy_into(tmp, fx() / "good/hf_m1_untied_fp32");
  const std::string st = test::read_file(hf / "model.safetensors");
  write_bytes(hf / "model.safetensors", st.substr(0, st.size() / 2));
  std::string msg = error_of([&] { load_checkpoint(hf); }, "CheckpointError");
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor '"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  for (size_t keep : {size_t{0}, size_t{5}, size_t{100}}) {
    write_bytes(hf / "model.safetensors", st.substr(0, keep));
    msg = error_of([&] { load_checkpoint(hf); }, "CheckpointError");
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  }
  // overlapping tensors in a loadable directory: the message names the file and both tensors
  write_bytes(hf / "model.safetensors",
              safetensors_bytes(R"({"backbone.norm_f.weight": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]},
                                    "lm_head.weight": {"dtype": "F32", "shape": [16], "data_offsets": [32, 96]}})",
                                96));
  msg = error_of([&] { load_checkpoint(hf); }, "CheckpointError");
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("overlap"), std::string::npos) << msg;

  // pytorch_model.bin cut short anywhere
  const fs::path ss = copy_into(tmp, fx() / "good/ss_m2_tied_bf16");
  const std::string bin = test::read_file(ss / "pytorch_model.bin");
  for (size_t keep : {size_t{0}, size_t{10}, bin.size() / 3, bin.size() - 30, bin.size() - 1}) {
    write_bytes(ss / "pytorch_model.bin", bin.substr(0, keep));
    msg = error_of([&] { load_checkpoint(ss); }, "CheckpointError");
    EXPECT_NE(msg.find("pytorch_model.bin"), std::string::npos) << msg;
  }
  // a missing shard of a sharded model
  const fs::path org = copy_into(tmp, test::source_dir() / "assets/models/organism-mamba1-7m");
  fs::remove(org / "model-00002-of-00002.safetensors");
  msg = error_of([&] { load_checkpoint(org); }, "IoError");
  EXPECT_NE(msg.find("model-00002-of-00002.safetensors"), std::string::npos) << msg;
}

TEST(Checkpoints, RandomCorruptionNeverCrashes) {
  // Byte flips anywhere in a pytorch_model.bin (mostly in data.pkl and the zip records) must either load or
  // throw an mx::Error: no crash, hang or other exception type.
  test::TempDir tmp("ckpt_fuzz");
  const fs::path d = copy_into(tmp, fx() / "good/ss_m1_tied_fp32");
  const std::string bin = test::read_file(d / "pytorch_model.bin");
  const size_t pkl_end = 1024;  // data.pkl is the archive's first entry
  std::mt19937 rng(7);
  int loaded = 0, refused = 0;
  for (int it = 0; it < 300; ++it) {
    std::string b = bin;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      const size_t pos = (it % 2 == 0) ? rng() % std::min(pkl_end, b.size()) : rng() % b.size();
      b[pos] = static_cast<char>(rng() & 0xff);
    }
    write_bytes(d / "pytorch_model.bin", b);
    try {
      load_checkpoint(d);
      ++loaded;
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_EQ(loaded + refused, 300);
  EXPECT_GT(refused, 0);
}

// ---- the CLI -----------------------------------------------------------------------------------------------
struct CliRun {
  int rc = -1;
  std::string out, err;
};

CliRun run_cli(const std::string& args) {
  test::TempDir tmp("ckpt_cli");
  const fs::path out = tmp.path() / "out", err = tmp.path() / "err";
  const std::string cmd =
      "'" + test::env_dir("MX_CLI").string() + "' " + args + " >'" + out.string() + "' 2>'" + err.string() + "'";
  const int st = std::system(cmd.c_str());
  CliRun r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = test::read_file(out);
  r.err = test::read_file(err);
  return r;
}

TEST(InspectCli, JsonKeys) {
  const auto org = test::source_dir() / "assets/models/organism-mamba2-7m";
  const CliRun r = run_cli("inspect --model '" + org.string() + "' --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const json j = json::parse(r.out);
  for (const char* k : {"arch", "n_layer", "d_model", "d_inner", "d_state", "n_heads", "n_groups", "vocab_size",
                        "dtype", "n_params", "format"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j.at("arch"), "mamba2");
  EXPECT_EQ(j.at("n_layer"), 8);
  EXPECT_EQ(j.at("n_heads"), 4);
  EXPECT_EQ(j.at("n_groups"), 1);
  EXPECT_EQ(j.at("vocab_size"), 50288);
  EXPECT_EQ(j.at("dtype"), "bfloat16");
  EXPECT_EQ(j.at("n_params"), 7377120);
  EXPECT_EQ(j.at("format"), "safetensors-sharded");

  const CliRun t = run_cli("inspect --model '" + (fx() / "good/ss_m1_untied_fp16").string() + "'");
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_NE(t.out.find("mamba1"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("pytorch_model.bin"), std::string::npos) << t.out;
}

TEST(InspectCli, BadCheckpointExitsOneWithOneLine) {
  for (const char* name : {"evil_os_system", "wrong_shape", "malformed_json"}) {
    const CliRun r = run_cli("inspect --model '" + (fx() / "bad" / name).string() + "' --json");
    EXPECT_EQ(r.rc, 1) << name;
    EXPECT_TRUE(r.out.empty()) << r.out;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(name), std::string::npos) << r.err;
  }
  EXPECT_EQ(run_cli("inspect").rc, 2);  // --model is required: a usage error
}

}  // namespace
}  // namespace mx
