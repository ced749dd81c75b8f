// Hostile inputs of issue 7 that no other test covers (docs/hardening.md has the whole table, with the test of
// each row): NaN / Inf weights, checkpoints whose header lies about a dtype or a shape, pickles naming globals
// beyond the allowed ones through every opcode that can name one, factors that are NaN / zero / out of float32
// range / absurdly long, context lengths 0, 1 and absurd, missing and unreadable files, and outputs that cannot
// be written (a device such as /dev/full, a file-size limit, a full file system) — through the library and
// through the real executable: one line on stderr, exit 1 (2 for usage errors), nothing half-written.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "mambaextend/calibrate.h"
#include "mambaextend/checkpoint.h"
#include "mambaextend/config.h"
#include "mambaextend/error.h"
#include "mambaextend/factors.h"
#include "mambaextend/io.h"
#include "mambaextend/tokenizer.h"
#include "unit/calib_helpers.h"
#include "unit/fixtures.h"
#include "unit/temp_dir.h"

namespace mx {
namespace {

namespace fs = std::filesystem;

struct CliRun {
  int rc = -1;
  std::string out, err;
};

// Runs the real executable with `args` (no shell); `fsize_limit` > 0 sets RLIMIT_FSIZE in the child (SIGXFSZ
// ignored, so that a write past it fails with EFBIG as on a full disk).
CliRun run_cli(const std::vector<std::string>& args, rlim_t fsize_limit = 0) {
  static int counter = 0;
  const test::TempDir tmp("hard_cli_" + std::to_string(counter++));
  const fs::path out = tmp.path() / "out", err = tmp.path() / "err";
  const pid_t pid = fork();
  if (pid == 0) {
    if (std::freopen(out.c_str(), "w", stdout) == nullptr || std::freopen(err.c_str(), "w", stderr) == nullptr)
      _exit(127);
    if (fsize_limit > 0) {
      std::signal(SIGXFSZ, SIG_IGN);
      const rlimit rl{fsize_limit, fsize_limit};
      if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(126);
    }
    std::vector<char*> argv;
    const std::string cli = test::env_dir("MX_CLI").string();
    argv.push_back(const_cast<char*>(cli.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(cli.c_str(), argv.data());
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  CliRun r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = test::read_file(out);
  r.err = test::read_file(err);
  return r;
}

// Exit `rc`, exactly one error line naming `needle`, no crash text.
void expect_one_line_error(const CliRun& r, int rc, const std::string& needle, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(r.rc, rc) << r.err;
  size_t errors = 0;
  for (size_t pos = r.err.find("[error]"); pos != std::string::npos; pos = r.err.find("[error]", pos + 1)) ++errors;
  if (rc == 2 && errors == 0) errors = r.err.empty() ? 0 : 1;  // CLI11's own usage errors carry no [error] tag
  EXPECT_EQ(errors, 1u) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
  for (const char* crash : {"terminate", "Aborted", "Segmentation", "AddressSanitizer", "runtime error"})
    EXPECT_EQ(r.err.find(crash), std::string::npos) << r.err;
}

std::string le32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

void put(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A stored zip holding archive/data.pkl = pkl (the torch.save layout).
std::string torch_zip(const std::string& pkl) {
  const std::string name = "archive/data.pkl";
  std::string out, cd;
  put(out, 0x04034b50, 4); put(out, 20, 2); put(out, 0, 2); put(out, 0, 2); put(out, 0, 4); put(out, 0, 4);
  put(out, pkl.size(), 4); put(out, pkl.size(), 4); put(out, name.size(), 2); put(out, 0, 2);
  out += name + pkl;
  put(cd, 0x02014b50, 4); put(cd, 20, 2); put(cd, 20, 2); put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 4);
  put(cd, 0, 4); put(cd, pkl.size(), 4); put(cd, pkl.size(), 4); put(cd, name.size(), 2); put(cd, 0, 2);
  put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 4); put(cd, 0, 4);
  cd += name;
  const size_t cd_offset = out.size();
  out += cd;
  put(out, 0x06054b50, 4); put(out, 0, 2); put(out, 0, 2); put(out, 1, 2); put(out, 1, 2); put(out, cd.size(), 4);
  put(out, cd_offset, 4); put(out, 0, 2);
  return out;
}

std::string binunicode(const std::string& s) { return "X" + le32(static_cast<uint32_t>(s.size())) + s; }

void write_bytes(const fs::path& p, const std::string& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << b;
  ASSERT_TRUE(f.good()) << p;
}

// A copy of an organism (config, index, shards) to poison.
fs::path copy_organism(const test::TempDir& tmp, const std::string& arch, const std::string& name) {
  const fs::path dst = tmp.path() / name;
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(test::organism_dir(arch))) fs::copy_file(e.path(), dst / e.path().filename());
  return dst;
}

// The shard holding `tensor` (stored name), its bytes and the tensor's record.
struct Located {
  fs::path file;
  std::string bytes;
  TensorRecord rec;
};
Located locate(const fs::path& dir, const std::string& tensor) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    Located l{e.path(), test::read_file(e.path()), {}};
    for (const auto& r : read_safetensors_header(reinterpret_cast<const uint8_t*>(l.bytes.data()), l.bytes.size(), "x"))
      if (r.name == tensor) {
        l.rec = r;
        return l;
      }
  }
  throw std::runtime_error("no tensor " + tensor + " in " + dir.string());
}

const std::string kNormF = "backbone.norm_f.weight";

// ---- NaN / Inf weights ----------------------------------------------------------------------------------------

TEST(HostileWeights, NanAndInfWeightsLoadWithAWarningAndCalibrateRefuses) {
  const test::TempDir tmp("hard_nan");
  for (const auto& [name, pattern] : {std::pair<std::string, uint16_t>{"nan", 0x7fc0}, {"inf", 0x7f80}}) {
    SCOPED_TRACE(name);
    const fs::path dir = copy_organism(tmp, "mamba1", name);
    Located l = locate(dir, kNormF);
    ASSERT_EQ(l.rec.dtype, DType::BF16);
    for (uint64_t i = 0; i < l.rec.nbytes / 2; i += 7) {  // every 7th element of the final norm's weight
      l.bytes[l.rec.offset + 2 * i] = static_cast<char>(pattern & 0xff);
      l.bytes[l.rec.offset + 2 * i + 1] = static_cast<char>(pattern >> 8);
    }
    write_bytes(l.file, l.bytes);

    const CliRun insp = run_cli({"inspect", "--model", dir.string()});
    EXPECT_EQ(insp.rc, 0) << insp.err;
    EXPECT_NE(insp.err.find("[warning]"), std::string::npos) << insp.err;
    EXPECT_NE(insp.err.find(kNormF), std::string::npos) << insp.err;
    EXPECT_NE(insp.err.find("NaN or infinite"), std::string::npos) << insp.err;

    const fs::path out = tmp.path() / (name + "_factors.json");
    const CliRun cal = run_cli({"--log-level", "warn", "calibrate", "--model", dir.string(), "--tokenizer",
                                test::tokenizer_path().string(), "--data",
                                (test::source_dir() / "assets/books/train").string(), "--cache-dir",
                                test::calib_cache_dir().string(), "--length", "64", "--samples", "2", "--pred-len",
                                "20", "--iterations", "2", "--out", out.string()});
    expect_one_line_error(cal, 1, "refusing to calibrate", name + " calibrate");
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(resume_state_path(out)));
  }
}

// ---- headers that lie -----------------------------------------------------------------------------------------

TEST(HostileWeights, HeaderLyingAboutDtypeOrShapeIsRefusedNamingTheTensor) {
  const test::TempDir tmp("hard_lies");
  const fs::path dir = copy_organism(tmp, "mamba1", "lies");
  // Edits of one tensor's header entry that keep the header's length (so the data region does not move).
  const auto edit = [&](const std::string& tensor, const std::string& from, const std::string& to) {
    fs::path file;  // the shard whose header names the tensor (found without parsing: it may be invalid now)
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors" &&
          test::read_file(e.path()).substr(0, 1 << 16).find("\"" + tensor + "\"") != std::string::npos)
        file = e.path();
    ASSERT_FALSE(file.empty()) << tensor;
    std::string b = test::read_file(file);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | static_cast<unsigned char>(b[i]);
    const size_t at = b.find(from, b.find("\"" + tensor + "\""));
    ASSERT_LT(at, 8 + hlen) << from;
    ASSERT_EQ(from.size(), to.size());
    b.replace(at, from.size(), to);
    write_bytes(file, b);
  };
  const auto refusal = [&] {
    try {
      load_checkpoint(dir);
    } catch (const CheckpointError& e) {
      return std::string(e.what());
    }
    return std::string("(loaded)");
  };
  // A dtype lie: F32 (4 bytes per element) over the bytes of BF16 (2): the byte span does not fit.
  edit(kNormF, "\"BF16\"", "\"F32\" ");
  std::string msg = refusal();
  EXPECT_NE(msg.find(kNormF), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected 512"), std::string::npos) << msg;
  edit(kNormF, "\"F32\" ", "\"BF16\"");
  EXPECT_NO_THROW(load_checkpoint(dir)) << "the edits are undone";
  // A shape lie with the same byte count (dt_proj transposed): the config's shape decides.
  const std::string dt_proj = "backbone.layers.0.mixer.dt_proj.weight";
  edit(dt_proj, "[256,8]", "[8,256]");
  msg = refusal();
  EXPECT_NE(msg.find(dt_proj), std::string::npos) << msg;
  EXPECT_NE(msg.find("[8, 256]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  // Through the executable: one line, exit 1.
  expect_one_line_error(run_cli({"inspect", "--model", dir.string()}), 1, dt_proj, "inspect, shape lie");
}

// ---- pickles naming globals beyond the allowed ones -----------------------------------------------------------

TEST(HostilePickle, EveryWayOfNamingAGlobalIsRefusedAndNothingRuns) {
  const test::TempDir tmp("hard_pickle");
  const fs::path sentinel = tmp.path() / "pwned";
  const std::string cmd = "touch " + sentinel.string();
  const std::string os_system_call = binunicode(cmd) + "\x85R.";  // (cmd,) then REDUCE
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\x80\x02" "cposix\nsystem\n" + os_system_call, "posix.system"},                         // GLOBAL
      {"\x80\x04" + binunicode("os") + binunicode("system") + "\x93" + os_system_call, "os.system"},  // STACK_GLOBAL
      {"\x80\x02(" + binunicode(cmd) + "ios\nsystem\n.", "opcode 0x69"},  // INST: not an opcode torch.save writes
      {"\x80\x02" "cbuiltins\neval\n" + binunicode("1") + "\x85R.", "builtins.eval"},
      {"\x80\x02" "csubprocess\nPopen\n" + os_system_call, "subprocess.Popen"},
      {"\x80\x02" "ctorch\nload\n.", "torch.load"},
      {"\x80\x02" "ccollections\nOrderedDictX\n.", "collections.OrderedDictX"},
      {"\x80\x02" "c" + std::string(300, 'a') + "\nb\n.", "GLOBAL name longer"},
  };
  for (const auto& [pkl, want] : cases) {
    const std::string zip = torch_zip(pkl);
    std::string msg;
    try {
      read_torch_zip(reinterpret_cast<const uint8_t*>(zip.data()), zip.size(), "evil.bin");
      ADD_FAILURE() << "accepted a pickle naming " << want;
    } catch (const CheckpointError& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find("evil.bin"), std::string::npos) << msg;
    EXPECT_NE(msg.find(want), std::string::npos) << "expected '" << want << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(sentinel)) << "a pickle was executed";
  // Through the executable: a state-spaces directory whose pytorch_model.bin calls os.system.
  const fs::path dir = tmp.path() / "model";
  fs::create_directories(dir);
  write_bytes(dir / "config.json", R"({"d_model": 16, "n_layer": 1, "vocab_size": 32, "ssm_cfg": {}})");
  write_bytes(dir / "pytorch_model.bin", torch_zip(cases[1].first));
  expect_one_line_error(run_cli({"inspect", "--model", dir.string()}), 1, "os.system", "inspect, evil pickle");
  EXPECT_FALSE(fs::exists(sentinel)) << "a pickle was executed";
}

// ---- tokenizer.json ------------------------------------------------------------------------------------------

// Regression of fuzz_tokenizer_json's finding: one vocab id near 10^9 made the loader allocate a 33 GB id table.
TEST(HostileTokenizer, SparseHugeVocabIdIsRefusedWithoutAllocating) {
  const std::string head = R"({"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "merges": [], "vocab": )";
  for (const char* id : {"1000000000", "2147483647", "4294967295", "65538"}) {
    try {
      Tokenizer::from_json(head + R"({"a": 0, "b": )" + id + "}}}", "t.json");
      ADD_FAILURE() << "accepted id " << id;
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("t.json"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("ids must be dense"), std::string::npos) << e.what();
    }
  }
  // Gaps up to 65536 unused ids are still accepted.
  const Tokenizer t = Tokenizer::from_json(head + R"({"a": 0, "b": 65537}}})", "t.json");
  EXPECT_EQ(t.vocab_size(), 65538);
}

// ---- factors ----------------------------------------------------------------------------------------------------

TEST(HostileFactors, NanZeroOutOfRangeAndAbsurdLengthsAreRefused) {
  ModelConfig cfg;
  cfg.arch = Arch::Mamba1;
  cfg.n_layer = 3;
  cfg.d_model = 2;
  cfg.d_inner = 4;
  const std::string huge_list = "[" + [] {
    std::string s = "1";
    for (int i = 1; i < 1000000; ++i) s += ",1";
    return s;
  }() + "]";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"[1, NaN, 1]", "invalid JSON"},              // Python's json.dumps(float('nan')): not JSON
      {"[1, Infinity, 1]", "invalid JSON"},
      {"[1, 1e999, 1]", "invalid JSON"},            // overflows a double while parsing
      {"[1, 0, 1]", "positive finite"},
      {"[1, -0.0, 1]", "positive finite"},
      {"[1, 1e39, 1]", "float32 range"},            // finite double, infinite float
      {"[1, 1e-45, 1]", "float32 range"},           // a float32 denormal: 0 or worse after a product
      {"[1, 1, [1, 1, 1]]", "3 values; expected 1"},  // wrong width
      {"[]", "0 layers"},
      {huge_list, "1000000 layers"},
      {"[1, null, 1]", "expected a number"},
      {R"({"format": "mambaextend.factors/v1", "scales": [1, 1, {"x": 1}]})", "expected a number or a list"},
  };
  for (const auto& [text, want] : bad) {
    std::string msg;
    try {
      parse_factors(text, cfg, "factors file f.json");
      ADD_FAILURE() << "accepted " << text.substr(0, 80);
    } catch (const ConfigError& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find("f.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(want), std::string::npos) << "expected '" << want << "' in: " << msg.substr(0, 300);
    EXPECT_LT(msg.size(), 600u) << "messages stay short";
  }
  // The edges of the accepted range load.
  const DtScales ok = parse_factors("[1e-30, 3.0e38, 1]", cfg, "f.json");
  EXPECT_EQ(ok.per_layer.size(), 3u);
}

// ---- the CLI: lengths, missing and unreadable files -----------------------------------------------------------

class HostileCli : public ::testing::Test {
 protected:
  HostileCli() : tmp_("hard_cli_table") {
    data_ = tmp_.path() / "data";
    fs::create_directories(data_);
    const std::string book = test::read_file(test::source_dir() / "assets/books/test/1695.txt");
    write_bytes(data_ / "doc.txt", book.substr(0, book.find('\n', 6000) + 1));
  }
  std::vector<std::string> eval(const std::string& lengths, const std::string& model = "",
                                const std::string& tokenizer = "", const std::string& data = "") const {
    return {"eval-ppl", "--model", model.empty() ? test::organism_dir("mamba1").string() : model, "--tokenizer",
            tokenizer.empty() ? test::tokenizer_path().string() : tokenizer, "--data",
            data.empty() ? data_.string() : data, "--lengths", lengths, "--pred-len", "20", "--cache-dir",
            test::calib_cache_dir().string()};
  }
  std::vector<std::string> calib(const std::string& length) const {
    return {"calibrate", "--model", test::organism_dir("mamba1").string(), "--tokenizer", test::tokenizer_path().string(),
            "--data", data_.string(), "--length", length, "--samples", "1", "--pred-len", "20", "--iterations", "1",
            "--cache-dir", test::calib_cache_dir().string(), "--out", (tmp_.path() / "f.json").string()};
  }
  test::TempDir tmp_;
  fs::path data_;
};

TEST_F(HostileCli, LengthsZeroOneAndAbsurd) {
  expect_one_line_error(run_cli(eval("0")), 2, "0", "eval-ppl --lengths 0");
  expect_one_line_error(run_cli(eval("1")), 2, "1", "eval-ppl --lengths 1");
  expect_one_line_error(run_cli(eval("99999999999999999999")), 2, "99999999999999999999", "eval-ppl --lengths 1e20");
  expect_one_line_error(run_cli(eval("-5")), 2, "-5", "eval-ppl --lengths -5");
  {  // 10^12 parses: no document reaches it, a counted skip (ppl null), exit 0, nothing of that size allocated
    auto args = eval("1000000000000");
    const fs::path out = tmp_.path() / "huge.json";
    args.insert(args.end(), {"--out", out.string()});
    const CliRun r = run_cli(args);
    ASSERT_EQ(r.rc, 0) << r.err;
    const auto j = test::read_json(out);
    EXPECT_TRUE(j.at("results")[0].at("ppl").is_null()) << j.dump();
    EXPECT_EQ(j.at("results")[0].at("docs_skipped"), 1) << j.dump();
  }
  expect_one_line_error(run_cli(calib("0")), 2, "--length", "calibrate --length 0");
  expect_one_line_error(run_cli(calib("1")), 2, "--length", "calibrate --length 1");
  expect_one_line_error(run_cli(calib("1099511627776")), 2, "--length", "calibrate --length 2^40");
  // The largest accepted length: no document is that long, a clear data error (no allocation of L tokens).
  expect_one_line_error(run_cli(calib("16777216")), 1, "16777216", "calibrate --length 2^24");
  EXPECT_FALSE(fs::exists(tmp_.path() / "f.json"));
}

TEST_F(HostileCli, MissingFilesAndDirectoriesInTheirPlace) {
  const fs::path nowhere = tmp_.path() / "nowhere";
  expect_one_line_error(run_cli(eval("128", nowhere.string())), 1, nowhere.string(), "missing model dir");
  const fs::path no_config = tmp_.path() / "no_config";
  fs::create_directories(no_config);
  expect_one_line_error(run_cli(eval("128", no_config.string())), 1, "config.json", "model dir without config.json");
  expect_one_line_error(run_cli(eval("128", "", (nowhere / "tokenizer.json").string())), 1, "tokenizer.json",
                        "missing tokenizer");
  expect_one_line_error(run_cli(eval("128", "", tmp_.path().string())), 1, "is a directory",
                        "tokenizer is a directory");
  expect_one_line_error(run_cli(eval("128", "", "", (nowhere / "books").string())), 1, "books", "missing data");
  auto with_factors = eval("128");
  with_factors.insert(with_factors.end(), {"--factors", (nowhere / "f.json").string()});
  expect_one_line_error(run_cli(with_factors), 1, "f.json", "missing factors file");
  with_factors.back() = data_.string();
  expect_one_line_error(run_cli(with_factors), 1, "is a directory", "factors file is a directory");
}

TEST_F(HostileCli, UnreadableFiles) {
  if (geteuid() == 0)
    GTEST_SKIP() << "running as root: chmod 000 does not stop root from reading, so unreadable files cannot be "
                    "made here (run the suite as an ordinary user to exercise this test)";
  const fs::path model = tmp_.path() / "model";
  fs::create_directories(model);
  for (const auto& e : fs::directory_iterator(test::organism_dir("mamba1"))) fs::copy_file(e.path(), model / e.path().filename());
  const fs::path tok = tmp_.path() / "tokenizer.json";
  fs::copy_file(test::tokenizer_path(), tok);
  struct Case {
    fs::path file;
    std::vector<std::string> args;
  };
  const std::vector<Case> cases = {{model / "config.json", eval("128", model.string())},
                                   {model / "model-00001-of-00002.safetensors", eval("128", model.string())},
                                   {model / "model.safetensors.index.json", eval("128", model.string())},
                                   {tok, eval("128", "", tok.string())},
                                   {data_ / "doc.txt", eval("128")}};
  for (const auto& c : cases) {
    ASSERT_EQ(::chmod(c.file.c_str(), 0), 0);
    expect_one_line_error(run_cli(c.args), 1, c.file.filename().string(), "unreadable " + c.file.string());
    ASSERT_EQ(::chmod(c.file.c_str(), 0644), 0);
  }
}

// ---- outputs that cannot be written ---------------------------------------------------------------------------

// No temporary file of the atomic writer left in `dir`.
void expect_no_temporaries(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
}

TEST(HostileOutput, DeviceTargetIsNeverReplaced) {
  struct stat before {};
  ASSERT_EQ(::stat("/dev/full", &before), 0);
  ASSERT_TRUE(S_ISCHR(before.st_mode));
  try {
    write_file_atomic("/dev/full", "x");
    ADD_FAILURE() << "wrote over /dev/full";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/full"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
  struct stat after {};
  ASSERT_EQ(::stat("/dev/full", &after), 0);
  EXPECT_TRUE(S_ISCHR(after.st_mode)) << "/dev/full was replaced";
  const test::TempDir tmp("hard_dirout");
  EXPECT_THROW(write_file_atomic(tmp.path(), "x"), IoError);  // a directory in the target's place
  // Through the executable: eval-ppl --out /dev/full.
  const CliRun r = run_cli({"eval-ppl", "--model", test::organism_dir("mamba1").string(), "--tokenizer",
                            test::tokenizer_path().string(), "--data",
                            (test::source_dir() / "assets/books/validation").string(), "--lengths", "64", "--pred-len",
                            "20", "--max-docs", "1", "--cache-dir", test::calib_cache_dir().string(), "--out",
                            "/dev/full"});
  expect_one_line_error(r, 1, "/dev/full", "eval-ppl --out /dev/full");
  ASSERT_EQ(::stat("/dev/full", &after), 0);
  EXPECT_TRUE(S_ISCHR(after.st_mode));
}

TEST(HostileOutput, WriteFailureLeavesTheOldFileAndNoTemporary) {
  const test::TempDir tmp("hard_efbig");
  const fs::path target = tmp.path() / "out.json";
  write_file_atomic(target, "old contents\n");
  // A child with a 4 KiB file-size limit writes 1 MiB: EFBIG, as on a full disk.
  const pid_t pid = fork();
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit rl{4096, 4096};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
    try {
      write_file_atomic(target, std::string(1 << 20, 'x'));
    } catch (const IoError& e) {
      _exit(std::string(e.what()).find("write failed") != std::string::npos &&
                    std::string(e.what()).find(target.string()) != std::string::npos
                ? 0
                : 4);
    }
    _exit(5);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0) << "3: setrlimit failed, 4: wrong message, 5: no error";
  EXPECT_EQ(test::read_file(target), "old contents\n");
  expect_no_temporaries(tmp.path());

  // Through the executable: `tokenize` under the same limit fails on its first .u32 with one line, exit 1.
  const fs::path out = tmp.path() / "tokens";
  const CliRun r = run_cli({"tokenize", "--tokenizer", test::tokenizer_path().string(), "--data",
                            (test::source_dir() / "assets/books/validation").string(), "--out", out.string(),
                            "--no-cache"},
                           4096);
  expect_one_line_error(r, 1, "File too large", "tokenize under RLIMIT_FSIZE");
  if (fs::is_directory(out)) {
    expect_no_temporaries(out);
    for (const auto& e : fs::directory_iterator(out)) EXPECT_LE(fs::file_size(e.path()), 4096u) << e.path();
  }
}

TEST(HostileOutput, FullFileSystem) {
  const test::TempDir tmp("hard_enospc");
  const fs::path mnt = tmp.path() / "mnt";
  fs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=64k") != 0)
    GTEST_SKIP() << "cannot mount a 64 KiB tmpfs here (" << std::strerror(errno)
                 << "): the full-disk case is covered by WriteFailureLeavesTheOldFileAndNoTemporary (EFBIG)";
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const fs::path target = mnt / "factors.json";
  write_file_atomic(target, "old\n");
  try {
    write_file_atomic(target, std::string(1 << 20, 'x'));
    ADD_FAILURE() << "wrote 1 MiB into a 64 KiB file system";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("No space left on device"), std::string::npos) << e.what();
  }
  EXPECT_EQ(test::read_file(target), "old\n");
  expect_no_temporaries(mnt);
  // Through the executable: tokenize --out on the full file system.
  const CliRun r = run_cli({"tokenize", "--tokenizer", test::tokenizer_path().string(), "--data",
                            (test::source_dir() / "assets/books/validation").string(), "--out",
                            (mnt / "tokens").string(), "--no-cache"});
  expect_one_line_error(r, 1, "No space left on device", "tokenize onto a full tmpfs");
  if (fs::is_directory(mnt / "tokens")) expect_no_temporaries(mnt / "tokens");
}

}  // namespace
}  // namespace mx
