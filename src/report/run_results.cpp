// gather_runs and the markdown tables of `mambaextend report` (run_results.h).
#include "report/run_results.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

#include "mambaextend/error.h"

namespace mx::report {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw IoError("report: cannot open " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string num(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// A field of a report, with the file and the field in the message when it is missing or of the wrong type.
template <typename T>
T field(const json& j, const char* key, const fs::path& file) {
  if (!j.is_object() || !j.contains(key))
    throw DataError("report: " + file.string() + ": missing field \"" + key + "\"");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    throw DataError("report: " + file.string() + ": field \"" + key + "\" has the wrong type: " + j.at(key).dump());
  }
}

std::optional<double> opt_number(const json& j, const char* key) {
  if (!j.contains(key) || !j.at(key).is_number()) return std::nullopt;
  return j.at(key).get<double>();
}

std::string last_component(const std::string& dir) {
  fs::path p(dir);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "models/x/" -> "models/x"
  return p.filename().empty() ? dir : p.filename().string();
}

struct Labels {
  std::string model, method;
};

// cell.json beside the report, else what the report itself says (see run_results.h).
Labels labels_for(const fs::path& file, const std::string& model_dir, const json& factors_path) {
  Labels l;
  const fs::path cell = file.parent_path() / "cell.json";
  std::error_code ec;
  if (fs::is_regular_file(cell, ec)) {
    json c;
    try {
      c = json::parse(read_text(cell));
    } catch (const json::exception& e) {
      throw DataError("report: " + cell.string() + ": invalid JSON: " + e.what());
    }
    if (c.contains("model")) l.model = field<std::string>(c, "model", cell);
    if (c.contains("method")) l.method = field<std::string>(c, "method", cell);
  }
  if (l.model.empty()) l.model = last_component(model_dir);
  if (l.method.empty()) {
    if (factors_path.is_null()) {
      l.method = "vanilla";
    } else {
      l.method = "calibrated";
      const fs::path fp(factors_path.get<std::string>());
      for (const fs::path& cand : {fp, file.parent_path() / fp.filename()}) {
        if (!fs::is_regular_file(cand, ec)) continue;
        try {
          const json f = json::parse(read_text(cand));
          if (f.is_object() && f.contains("method") && f.at("method").is_string()) l.method = f.at("method").get<std::string>();
        } catch (const json::exception&) {
          // a factors file that is not JSON leaves the label "calibrated"; eval-ppl has already refused it if bad
        }
        break;
      }
    }
  }
  return l;
}

int method_rank(const std::string& m) { return m == "vanilla" ? 0 : 1; }

}  // namespace

std::vector<std::string> ordered_methods(const std::vector<std::string>& methods) {
  std::vector<std::string> out(methods);
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    return std::make_tuple(method_rank(a), a) < std::make_tuple(method_rank(b), b);
  });
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Runs gather_runs(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw IoError("report: --runs " + dir.string() + " is not a directory");
  std::vector<fs::path> files;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) throw IoError("report: cannot list " + dir.string() + ": " + ec.message());
    const std::string name = it->path().filename().string();
    if (!it->is_regular_file(ec) || name.empty() || name[0] == '.' || !ends_with(name, ".json") ||
        ends_with(name, ".state.json") || name == "cell.json")
      continue;
    files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());

  Runs runs;
  std::map<std::tuple<std::string, std::string, std::string, int64_t>, std::string> seen_ppl;
  std::map<std::tuple<std::string, std::string, int64_t, double>, std::string> seen_pk;
  for (const auto& file : files) {
    json j;
    try {
      j = json::parse(read_text(file));
    } catch (const json::exception& e) {
      throw DataError("report: " + file.string() + ": invalid JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("format") || !j.at("format").is_string()) continue;
    const std::string format = j.at("format").get<std::string>();
    const std::string rel = fs::relative(file, dir, ec).string();
    if (format == "mambaextend.eval-ppl/v1") {
      const json& model = j.contains("model") ? j.at("model") : json();
      const std::string model_dir = field<std::string>(model, "dir", file);
      const json factors = j.contains("factors") && j.at("factors").is_object() ? j.at("factors").value("path", json())
                                                                              : json();
      const Labels l = labels_for(file, model_dir, factors);
      const std::string protocol = field<std::string>(j, "protocol", file);
      const std::string data_path = j.contains("data") && j.at("data").is_object() && j.at("data").contains("path") &&
                                            j.at("data").at("path").is_string()
                                        ? j.at("data").at("path").get<std::string>()
                                        : "";
      const json results = field<json>(j, "results", file);
      if (!results.is_array()) throw DataError("report: " + file.string() + ": \"results\" is not an array");
      for (const auto& r : results) {
        PplRow row{l.model, l.method, protocol, field<int64_t>(r, "length", file), opt_number(r, "ppl"),
                   opt_number(r, "ppl_se"), r.value("windows", int64_t{0}), rel, data_path};
        const auto key = std::make_tuple(row.model, row.method, row.protocol, row.length);
        const auto [it, fresh] = seen_ppl.emplace(key, rel);
        if (!fresh)
          throw DataError("report: " + rel + " and " + it->second + " both hold perplexity for model " + row.model +
                          ", method " + row.method + ", protocol " + protocol + ", L = " + std::to_string(row.length));
        runs.ppl.push_back(row);
      }
      ++runs.files;
    } else if (format == "mambaextend.passkey/v1") {
      const json& model = j.contains("model") ? j.at("model") : json();
      const std::string model_dir = field<std::string>(model, "path", file);
      const Labels l = labels_for(file, model_dir, j.contains("factors") ? j.at("factors") : json());
      const json cells = field<json>(j, "cells", file);
      if (!cells.is_array()) throw DataError("report: " + file.string() + ": \"cells\" is not an array");
      for (const auto& c : cells) {
        PasskeyRow row{l.model, l.method, field<int64_t>(c, "length", file), field<double>(c, "depth", file),
                       field<int64_t>(c, "samples", file), field<double>(c, "success_published", file),
                       field<double>(c, "success_strict", file), rel};
        const auto key = std::make_tuple(row.model, row.method, row.length, row.depth);
        const auto [it, fresh] = seen_pk.emplace(key, rel);
        if (!fresh)
          throw DataError("report: " + rel + " and " + it->second + " both hold the passkey cell model " + row.model +
                          ", method " + row.method + ", L = " + std::to_string(row.length) + ", depth " +
                          num("%g", row.depth));
        runs.passkey.push_back(row);
      }
      ++runs.files;
    }
  }
  std::sort(runs.ppl.begin(), runs.ppl.end(), [](const PplRow& a, const PplRow& b) {
    return std::make_tuple(a.model, a.protocol, method_rank(a.method), a.method, a.length) <
           std::make_tuple(b.model, b.protocol, method_rank(b.method), b.method, b.length);
  });
  std::sort(runs.passkey.begin(), runs.passkey.end(), [](const PasskeyRow& a, const PasskeyRow& b) {
    return std::make_tuple(a.model, method_rank(a.method), a.method, a.length, a.depth) <
           std::make_tuple(b.model, method_rank(b.method), b.method, b.length, b.depth);
  });
  return runs;
}

namespace {

// 3 significant digits at least, 2 decimals below 100: 7.41, 23.45, 444.2, 46952.
std::string fmt_ppl(double v) {
  if (!std::isfinite(v)) return "inf";
  if (v >= 1000) return num("%.0f", v);
  if (v >= 100) return num("%.1f", v);
  return num("%.2f", v);
}

}  // namespace

std::string ppl_table_markdown(const Runs& runs) {
  std::set<std::string> protocols;
  for (const auto& r : runs.ppl) protocols.insert(r.protocol);
  std::string out;
  for (const auto& protocol : protocols) {
    std::vector<std::string> ms;
    std::set<std::pair<std::string, int64_t>> keys;  // (model, length)
    std::map<std::tuple<std::string, int64_t, std::string>, const PplRow*> at;
    for (const auto& r : runs.ppl) {
      if (r.protocol != protocol) continue;
      ms.push_back(r.method);
      keys.insert({r.model, r.length});
      at[{r.model, r.length, r.method}] = &r;
    }
    const auto methods = ordered_methods(ms);
    const bool has_vanilla = !methods.empty() && methods.front() == "vanilla";
    out += "Perplexity, protocol `" + protocol + "` (± one standard error)";
    out += has_vanilla && methods.size() > 1 ? "; \"vs vanilla\" is the change of perplexity against vanilla.\n\n"
                                             : ".\n\n";
    std::string head = "| model | length |", rule = "|---|---:|";
    for (const auto& m : methods) {
      head += " " + m + " |";
      rule += "---:|";
      if (has_vanilla && m != "vanilla") {
        head += " " + m + " vs vanilla |";
        rule += "---:|";
      }
    }
    out += head + "\n" + rule + "\n";
    for (const auto& [model, length] : keys) {
      std::string line = "| " + model + " | " + std::to_string(length) + " |";
      const auto van = at.find({model, length, "vanilla"});
      for (const auto& m : methods) {
        const auto it = at.find({model, length, m});
        const PplRow* r = it == at.end() ? nullptr : it->second;
        if (r == nullptr) line += " — |";
        else if (!r->ppl) line += " n/a |";
        else line += " " + fmt_ppl(*r->ppl) + (r->ppl_se ? " ± " + fmt_ppl(*r->ppl_se) : "") + " |";
        if (has_vanilla && m != "vanilla") {
          const PplRow* v = van == at.end() ? nullptr : van->second;
          if (r && v && r->ppl && v->ppl && *v->ppl > 0 && std::isfinite(*r->ppl) && std::isfinite(*v->ppl))
            line += " " + num("%+.1f%%", 100.0 * (*r->ppl / *v->ppl - 1.0)) + " |";
          else
            line += " — |";
        }
      }
      out += line + "\n";
    }
    out += "\n";
  }
  return out;
}

std::string passkey_table_markdown(const Runs& runs) {
  if (runs.passkey.empty()) return "";
  std::set<int64_t> lengths;
  std::vector<std::pair<std::string, std::string>> groups;  // (model, method) in row order
  for (const auto& r : runs.passkey) {
    lengths.insert(r.length);
    if (groups.empty() || groups.back() != std::make_pair(r.model, r.method)) groups.push_back({r.model, r.method});
  }
  std::string out = "Passkey retrieval, published success rule: success over the needle depths per length (k/n).\n\n";
  std::string head = "| model | method |", rule = "|---|---|";
  for (int64_t L : lengths) {
    head += " " + std::to_string(L) + " |";
    rule += "---:|";
  }
  out += head + " all |\n" + rule + "---:|\n";
  for (const auto& [model, method] : groups) {
    std::string line = "| " + model + " | " + method + " |";
    double hits_all = 0;
    int64_t n_all = 0;
    for (int64_t L : lengths) {
      double hits = 0;
      int64_t n = 0;
      for (const auto& r : runs.passkey)
        if (r.model == model && r.method == method && r.length == L) {
          hits += r.published * static_cast<double>(r.samples);
          n += r.samples;
        }
      hits_all += hits;
      n_all += n;
      line += n == 0 ? " — |" : " " + num("%.0f%%", 100.0 * hits / static_cast<double>(n)) + " (" +
                                    num("%.0f", hits) + "/" + std::to_string(n) + ") |";
    }
    line += n_all == 0 ? " — |" : " " + num("%.1f%%", 100.0 * hits_all / static_cast<double>(n_all)) + " |";
    out += line + "\n";
  }
  return out + "\n";
}

}  // namespace mx::report
