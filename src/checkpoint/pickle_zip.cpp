// pytorch_model.bin reader: a torch.save zip archive with a restricted unpickler of our own.
//   <stem>/data.pkl     pickle (protocol 2) of the state dict, an OrderedDict name -> tensor, each tensor
//                       _rebuild_tensor_v2(persistent_id(('storage', torch.<T>Storage, key, location, numel)),
//                                          storage_offset, size, stride, requires_grad, backward_hooks)
//   <stem>/data/<key>   the raw little-endian bytes of storage <key>, stored uncompressed (64-byte aligned)
//   <stem>/byteorder    "little" when present; version, .format_version, .data/* are ignored
// Zip: end-of-central-directory record (plain or ZIP64), central directory, local headers; stored entries only.
// Pickle: a stack machine over an arena of objects referenced by index (no recursion, cycles harmless, no
// recursive destruction). GLOBAL may name only collections.OrderedDict, torch._utils._rebuild_tensor_v2,
// torch._utils._rebuild_parameter and torch.{Float,Half,BFloat16,Double}Storage; anything else is refused
// before it could mean anything (nothing is ever executed). Input sizes, object counts and the stack are bounded.
// Limits: no compressed entries, no big-endian archives, no tensor subclasses or quantized storages.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "checkpoint/text.h"
#include "mambaextend/checkpoint.h"
#include "mambaextend/error.h"

namespace mx {

namespace {

// ---- little-endian readers over a bounded buffer -----------------------------------------------------
uint64_t le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// ---- zip ---------------------------------------------------------------------------------------------
struct ZipEntry {
  std::string name;
  uint64_t offset = 0;  // of the entry's data, from the start of the file
  uint64_t size = 0;
};

constexpr uint32_t kEocdSig = 0x06054b50, kZip64LocSig = 0x07064b50, kZip64EocdSig = 0x06064b50;
constexpr uint32_t kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;

std::vector<ZipEntry> read_zip_directory(const uint8_t* data, uint64_t size, const std::string& where) {
  const auto fail = [&](const std::string& what) -> CheckpointError {
    return CheckpointError(where + ": not a valid torch.save zip archive: " + what);
  };
  if (size < 22) throw fail("file of " + std::to_string(size) + " bytes is too short (truncated?)");
  // The end-of-central-directory record is in the last 22 + 65535 (comment) bytes.
  uint64_t eocd = UINT64_MAX;
  const uint64_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
  for (uint64_t p = size - 22 + 1; p-- > lowest;) {
    if (le(data + p, 4) == kEocdSig) {
      eocd = p;
      break;
    }
  }
  if (eocd == UINT64_MAX) throw fail("no end-of-central-directory record (truncated file?)");
  uint64_t n_entries = le(data + eocd + 10, 2);
  uint64_t cd_size = le(data + eocd + 12, 4);
  uint64_t cd_offset = le(data + eocd + 16, 4);
  if (n_entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    if (eocd < 20 || le(data + eocd - 20, 4) != kZip64LocSig) throw fail("ZIP64 locator missing");
    const uint64_t z = le(data + eocd - 20 + 8, 8);
    if (z > size || size - z < 56 || le(data + z, 4) != kZip64EocdSig) throw fail("ZIP64 end record out of range");
    n_entries = le(data + z + 32, 8);
    cd_size = le(data + z + 40, 8);
    cd_offset = le(data + z + 48, 8);
  }
  if (cd_offset > size || cd_size > size - cd_offset) throw fail("central directory lies outside the file");
  if (n_entries > cd_size / 46)
    throw fail("central directory too small for its " + std::to_string(n_entries) + " entries");

  std::vector<ZipEntry> entries;
  uint64_t p = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < n_entries; ++i) {
    if (cd_end - p < 46 || le(data + p, 4) != kCentralSig)
      throw fail("corrupt central directory entry " + std::to_string(i));
    const uint64_t flags = le(data + p + 8, 2), method = le(data + p + 10, 2);
    uint64_t comp = le(data + p + 20, 4), uncomp = le(data + p + 24, 4);
    const uint64_t name_len = le(data + p + 28, 2), extra_len = le(data + p + 30, 2),
                   comment_len = le(data + p + 32, 2);
    uint64_t local = le(data + p + 42, 4);
    if (cd_end - p - 46 < name_len + extra_len + comment_len) throw fail("central directory entry runs past its end");
    ZipEntry e;
    e.name.assign(reinterpret_cast<const char*>(data + p + 46), name_len);
    if (text::has_control(e.name)) throw fail("entry name '" + text::printable(e.name) + "' has control characters");
    // ZIP64 extended information (header id 1): the 8-byte values whose 4-byte fields are 0xFFFFFFFF, in order.
    const uint8_t* x = data + p + 46 + name_len;
    for (uint64_t q = 0; q + 4 <= extra_len;) {
      const uint64_t id = le(x + q, 2), len = le(x + q + 2, 2);
      if (q + 4 + len > extra_len) throw fail("corrupt extra field of '" + e.name + "'");
      if (id == 1) {
        uint64_t r = q + 4;
        for (uint64_t* field : {&uncomp, &comp, &local}) {
          if (*field != 0xFFFFFFFF) continue;
          if (r + 8 > q + 4 + len) throw fail("short ZIP64 field of '" + e.name + "'");
          *field = le(x + r, 8);
          r += 8;
        }
      }
      q += 4 + len;
    }
    if (flags & 1) throw fail("entry '" + e.name + "' is encrypted");
    if (method != 0)
      throw CheckpointError(where + ": zip entry '" + e.name + "' is compressed (method " + std::to_string(method) +
                            "); torch.save writes stored (uncompressed) entries only");
    if (comp != uncomp) throw fail("stored entry '" + e.name + "' has different compressed and uncompressed sizes");
    if (local > size || size - local < 30 || le(data + local, 4) != kLocalSig)
      throw fail("local header of '" + e.name + "' out of range");
    const uint64_t start = local + 30 + le(data + local + 26, 2) + le(data + local + 28, 2);
    if (start > size || uncomp > size - start)
      throw CheckpointError(where + ": zip entry '" + e.name + "' (" + std::to_string(uncomp) +
                            " bytes) runs past the end of the file: truncated file");
    e.offset = start;
    e.size = uncomp;
    entries.push_back(std::move(e));
    p += 46 + name_len + extra_len + comment_len;
  }
  return entries;
}

// ---- restricted unpickler ----------------------------------------------------------------------------
constexpr uint64_t kMaxPickleBytes = uint64_t{64} << 20;  // measured ~100 B per tensor: 2.8b (643) ~ 64 KB
constexpr size_t kMaxObjects = size_t{1} << 20;  // a real state dict uses ~20 per tensor
constexpr size_t kMaxStack = size_t{1} << 20;
constexpr size_t kMaxItems = size_t{1} << 22;
constexpr size_t kMaxRank = 8;

enum class Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, Storage, Tensor };
enum class Fn { OrderedDict, RebuildTensorV2, RebuildParameter, Storage };

struct Obj {
  Kind kind = Kind::None;
  int64_t i = 0;               // Int / Bool value; Tensor: index into the records
  double f = 0.0;              // Float
  std::string s;               // Str; Global: qualified name; Storage: key
  std::vector<int32_t> items;  // Tuple / List items; Dict: key, value, key, value, ...
  Fn fn = Fn::OrderedDict;     // Global
  DType dtype = DType::F32;    // Global Storage, Storage
  uint64_t numel = 0;          // Storage: elements
};

// A tensor found by the unpickler, before it is placed in the file: offset in elements of its storage.
struct PendingTensor {
  TensorRecord rec;
  uint64_t storage_numel = 0;
  uint64_t elem_offset = 0;
};

class Unpickler {
 public:
  Unpickler(const uint8_t* p, uint64_t n, std::string where) : p_(p), n_(n), where_(std::move(where)) {}

  // Runs to STOP; returns (dict key, tensor) in insertion order.
  std::vector<std::pair<std::string, PendingTensor>> run() {
    for (;;) {
      if (pos_ >= n_) fail("ends without STOP (truncated)");
      op_pos_ = pos_;
      const uint8_t op = p_[pos_++];
      if (op == '.') break;
      step(op);
    }
    const Obj& top = obj(pop());
    if (top.kind != Kind::Dict) fail("the top-level object is not a dict (a state dict is expected)");
    std::vector<std::pair<std::string, PendingTensor>> out;
    std::map<std::string, size_t> seen;
    for (size_t k = 0; k + 1 < top.items.size(); k += 2) {
      const Obj& key = obj(top.items[k]);
      const Obj& val = obj(top.items[k + 1]);
      if (key.kind != Kind::Str) fail("a state-dict key is not a string");
      if (key.s.empty() || key.s.size() > 1024 || text::has_control(key.s))
        fail("state-dict key '" + text::printable(key.s) + "' is not a valid tensor name");
      if (val.kind != Kind::Tensor) fail("state-dict entry '" + key.s + "' is not a tensor");
      const auto it = seen.find(key.s);
      if (it != seen.end()) {
        out[it->second].second = tensors_[static_cast<size_t>(val.i)];  // Python dict semantics: last wins
      } else {
        seen.emplace(key.s, out.size());
        out.emplace_back(key.s, tensors_[static_cast<size_t>(val.i)]);
      }
    }
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw CheckpointError(where_ + ": " + what + " (pickle byte " + std::to_string(op_pos_) + ")");
  }
  const uint8_t* take(uint64_t k) {
    if (k > n_ - pos_) fail("malformed pickle: an argument runs past the end of data.pkl (truncated?)");
    const uint8_t* q = p_ + pos_;
    pos_ += k;
    return q;
  }
  uint64_t u(int k) { return le(take(static_cast<uint64_t>(k)), k); }
  int32_t make(Obj o) {
    if (objs_.size() >= kMaxObjects) fail("pickle holds more than " + std::to_string(kMaxObjects) + " objects");
    objs_.push_back(std::move(o));
    return static_cast<int32_t>(objs_.size() - 1);
  }
  int32_t make(Kind k, int64_t i = 0) {
    Obj o;
    o.kind = k;
    o.i = i;
    return make(std::move(o));
  }
  Obj& obj(int32_t id) { return objs_[static_cast<size_t>(id)]; }
  void push(int32_t id) {
    if (stack_.size() >= kMaxStack) fail("pickle stack exceeds " + std::to_string(kMaxStack) + " entries");
    stack_.push_back(id);
  }
  int32_t pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("malformed pickle: stack underflow");
    const int32_t id = stack_.back();
    stack_.pop_back();
    return id;
  }
  int32_t top() {
    const int32_t id = pop();
    stack_.push_back(id);
    return id;
  }
  // Pops everything above the last MARK.
  std::vector<int32_t> pop_mark() {
    if (marks_.empty()) fail("malformed pickle: no MARK");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<int32_t> v(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return v;
  }
  void add_items(int32_t target, const std::vector<int32_t>& v) {
    items_ += v.size();
    if (items_ > kMaxItems) fail("pickle containers exceed " + std::to_string(kMaxItems) + " items");
    auto& dst = obj(target).items;
    dst.insert(dst.end(), v.begin(), v.end());
  }
  int32_t tuple(std::vector<int32_t> v) {
    items_ += v.size();
    if (items_ > kMaxItems) fail("pickle containers exceed " + std::to_string(kMaxItems) + " items");
    Obj o;
    o.kind = Kind::Tuple;
    o.items = std::move(v);
    return make(std::move(o));
  }
  void memo_put(uint64_t k) {
    if (memo_.size() >= kMaxObjects && !memo_.count(k)) fail("pickle memo too large");
    memo_[k] = top();
  }
  void memo_get(uint64_t k) {
    const auto it = memo_.find(k);
    if (it == memo_.end()) fail("malformed pickle: memo key " + std::to_string(k) + " was never stored");
    push(it->second);
  }
  int32_t str(uint64_t len) {
    const uint8_t* q = take(len);
    Obj o;
    o.kind = Kind::Str;
    o.s.assign(reinterpret_cast<const char*>(q), len);
    return make(std::move(o));
  }
  std::string line() {
    std::string s;
    while (pos_ < n_ && p_[pos_] != '\n') {
      if (s.size() >= 256) fail("malformed pickle: GLOBAL name longer than 256 bytes");
      s += static_cast<char>(p_[pos_++]);
    }
    if (pos_ >= n_) fail("malformed pickle: unterminated GLOBAL (truncated?)");
    ++pos_;
    return s;
  }

  // The allow-list. Refusing here means the name is never looked up, let alone called.
  int32_t global(const std::string& module, const std::string& name) {
    struct Allowed {
      const char* module;
      const char* name;
      Fn fn;
      DType dtype;
    };
    static const Allowed kAllowed[] = {
        {"collections", "OrderedDict", Fn::OrderedDict, DType::F32},
        {"torch._utils", "_rebuild_tensor_v2", Fn::RebuildTensorV2, DType::F32},
        {"torch._utils", "_rebuild_parameter", Fn::RebuildParameter, DType::F32},
        {"torch", "FloatStorage", Fn::Storage, DType::F32},
        {"torch", "HalfStorage", Fn::Storage, DType::F16},
        {"torch", "BFloat16Storage", Fn::Storage, DType::BF16},
        {"torch", "DoubleStorage", Fn::Storage, DType::F64},
    };
    Obj o;
    o.kind = Kind::Global;
    o.s = module + "." + name;
    for (const Allowed& a : kAllowed) {
      if (module == a.module && name == a.name) {
        o.fn = a.fn;
        o.dtype = a.dtype;
        return make(std::move(o));
      }
    }
    fail("pickle names global " + text::printable(o.s) +
         ", which is not allowed (a state dict needs only collections.OrderedDict, "
         "torch._utils._rebuild_tensor_v2 and torch.{Float,Half,BFloat16,Double}Storage)");
  }

  int64_t as_int(int32_t id, const char* what) {
    const Obj& o = obj(id);
    if (o.kind != Kind::Int) fail(std::string("malformed tensor record: ") + what + " is not an integer");
    return o.i;
  }
  std::vector<int64_t> int_tuple(int32_t id, const char* what) {
    const Obj& o = obj(id);
    if (o.kind != Kind::Tuple || o.items.size() > kMaxRank)
      fail(std::string("malformed tensor record: ") + what + " is not a tuple of at most 8 integers");
    std::vector<int64_t> v;
    for (int32_t it : o.items) {
      const int64_t x = as_int(it, what);
      if (x < 0) fail(std::string("malformed tensor record: negative ") + what);
      v.push_back(x);
    }
    return v;
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  int32_t rebuild_tensor(const Obj& args) {
    if (args.items.size() < 6 || args.items.size() > 7) fail("_rebuild_tensor_v2 takes 6 or 7 arguments");
    const Obj& st = obj(args.items[0]);
    if (st.kind != Kind::Storage) fail("_rebuild_tensor_v2's first argument is not a storage");
    PendingTensor t;
    t.rec.dtype = st.dtype;
    t.rec.storage_key = st.s;
    t.storage_numel = st.numel;
    const int64_t off = as_int(args.items[1], "storage_offset");
    if (off < 0) fail("malformed tensor record: negative storage_offset");
    t.elem_offset = static_cast<uint64_t>(off);
    t.rec.shape = int_tuple(args.items[2], "size");
    t.rec.strides = int_tuple(args.items[3], "stride");
    if (t.rec.shape.size() != t.rec.strides.size()) fail("malformed tensor record: size and stride ranks differ");
    // Highest element touched = offset + sum (size_i - 1) * stride_i; it must lie inside the storage.
    uint64_t last = t.elem_offset;
    bool empty = false;
    for (size_t d = 0; d < t.rec.shape.size(); ++d) {
      const uint64_t sz = static_cast<uint64_t>(t.rec.shape[d]), sd = static_cast<uint64_t>(t.rec.strides[d]);
      if (sz == 0) empty = true;
      if (sz > 1 && sd > 0 && (sz - 1 > (UINT64_MAX >> 2) / sd || last > (UINT64_MAX >> 2) - (sz - 1) * sd))
        fail("malformed tensor record: size/stride overflow");
      if (sz > 1) last += (sz - 1) * sd;
    }
    if (!empty && last >= t.storage_numel)
      fail("tensor view reaches element " + std::to_string(last) + " of storage '" + st.s + "' with only " +
           std::to_string(t.storage_numel) + " elements");
    t.rec.nbytes = empty ? 0 : (last - t.elem_offset + 1) * dtype_size(t.rec.dtype);
    tensors_.push_back(std::move(t));
    return make(Kind::Tensor, static_cast<int64_t>(tensors_.size() - 1));
  }

  int32_t reduce(int32_t fn_id, int32_t args_id) {
    const Obj& fn = obj(fn_id);
    const Obj& args = obj(args_id);
    if (fn.kind != Kind::Global) fail("malformed pickle: REDUCE on something that is not a global");
    if (args.kind != Kind::Tuple) fail("malformed pickle: REDUCE arguments are not a tuple");
    switch (fn.fn) {
      case Fn::OrderedDict:
        if (!args.items.empty()) fail("OrderedDict is only accepted without arguments");
        return make(Kind::Dict);
      case Fn::RebuildTensorV2: return rebuild_tensor(args);
      case Fn::RebuildParameter:  // (data, requires_grad, backward_hooks): the tensor itself
        if (args.items.size() != 3 || obj(args.items[0]).kind != Kind::Tensor)
          fail("_rebuild_parameter expects (tensor, requires_grad, backward_hooks)");
        return args.items[0];
      case Fn::Storage: break;
    }
    fail("storage type " + fn.s + " cannot be called");
  }

  // BINPERSID: ('storage', torch.<T>Storage, key, location, numel)
  int32_t persistent(int32_t pid_id) {
    const Obj& pid = obj(pid_id);
    if (pid.kind != Kind::Tuple || pid.items.size() != 5) fail("persistent id is not a 5-tuple ('storage', ...)");
    const Obj& tag = obj(pid.items[0]);
    const Obj& type = obj(pid.items[1]);
    const Obj& key = obj(pid.items[2]);
    const Obj& numel = obj(pid.items[4]);
    if (tag.kind != Kind::Str || tag.s != "storage") fail("persistent id is not a storage");
    if (type.kind != Kind::Global || type.fn != Fn::Storage) fail("persistent id names no storage type");
    if (key.kind != Kind::Str || key.s.empty() || key.s.size() > 64 || key.s.find('/') != std::string::npos ||
        text::has_control(key.s))
      fail("persistent id has an invalid storage key");
    if (numel.kind != Kind::Int || numel.i < 0) fail("persistent id has an invalid element count");
    const auto it = storages_.find(key.s);
    if (it != storages_.end() &&
        (it->second.first != type.dtype || it->second.second != static_cast<uint64_t>(numel.i)))
      fail("storage '" + key.s + "' is declared twice with different types or sizes");
    storages_[key.s] = {type.dtype, static_cast<uint64_t>(numel.i)};
    Obj o;
    o.kind = Kind::Storage;
    o.s = key.s;
    o.dtype = type.dtype;
    o.numel = static_cast<uint64_t>(numel.i);
    return make(std::move(o));
  }

  void step(uint8_t op) {
    switch (op) {
      case 0x80: {  // PROTO
        const uint64_t v = u(1);
        if (v < 2 || v > 5) fail("unsupported pickle protocol " + std::to_string(v));
        return;
      }
      case 0x95: take(8); return;                         // FRAME (protocol 4): only a length hint
      case '(': marks_.push_back(stack_.size()); return;  // MARK
      case 'N': push(make(Kind::None)); return;
      case 0x88: push(make(Kind::Bool, 1)); return;                                                // NEWTRUE
      case 0x89: push(make(Kind::Bool, 0)); return;                                                // NEWFALSE
      case 'J': push(make(Kind::Int, static_cast<int32_t>(static_cast<uint32_t>(u(4))))); return;  // BININT
      case 'K': push(make(Kind::Int, static_cast<int64_t>(u(1)))); return;                         // BININT1
      case 'M': push(make(Kind::Int, static_cast<int64_t>(u(2)))); return;                         // BININT2
      case 0x8a: {  // LONG1: n-byte little-endian two's complement
        const uint64_t n = u(1);
        if (n > 8) fail("integer wider than 64 bits");
        uint64_t v = n ? le(take(n), static_cast<int>(n)) : 0;
        if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
        push(make(Kind::Int, static_cast<int64_t>(v)));
        return;
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        const uint8_t* q = take(8);
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | q[k];
        Obj o;
        o.kind = Kind::Float;
        std::memcpy(&o.f, &bits, 8);
        push(make(std::move(o)));
        return;
      }
      case 'X':
      case 'T':
      case 'B': push(str(u(4))); return;  // BINUNICODE, BINSTRING, BINBYTES
      case 0x8c:
      case 'U':
      case 'C': push(str(u(1))); return;          // SHORT_BINUNICODE, SHORT_BINSTRING, SHORT_BINBYTES
      case 0x8d: push(str(u(8))); return;         // BINUNICODE8
      case ')': push(tuple({})); return;          // EMPTY_TUPLE
      case 't': push(tuple(pop_mark())); return;  // TUPLE
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<int32_t> v(static_cast<size_t>(op - 0x84));
        for (size_t k = v.size(); k-- > 0;) v[k] = pop();
        push(tuple(std::move(v)));
        return;
      }
      case ']': push(make(Kind::List)); return;  // EMPTY_LIST
      case '}': push(make(Kind::Dict)); return;  // EMPTY_DICT
      case 'a': {                                // APPEND
        const int32_t v = pop();
        if (obj(top()).kind != Kind::List) fail("malformed pickle: APPEND to a non-list");
        add_items(top(), {v});
        return;
      }
      case 'e': {  // APPENDS
        const std::vector<int32_t> v = pop_mark();
        if (obj(top()).kind != Kind::List) fail("malformed pickle: APPENDS to a non-list");
        add_items(top(), v);
        return;
      }
      case 's': {  // SETITEM
        const int32_t v = pop(), k = pop();
        if (obj(top()).kind != Kind::Dict) fail("malformed pickle: SETITEM on a non-dict");
        add_items(top(), {k, v});
        return;
      }
      case 'u': {  // SETITEMS
        const std::vector<int32_t> v = pop_mark();
        if (v.size() % 2 != 0) fail("malformed pickle: SETITEMS with an odd number of items");
        if (obj(top()).kind != Kind::Dict) fail("malformed pickle: SETITEMS on a non-dict");
        add_items(top(), v);
        return;
      }
      case 'q': memo_put(u(1)); return;           // BINPUT
      case 'r': memo_put(u(4)); return;           // LONG_BINPUT
      case 0x94: memo_put(memo_.size()); return;  // MEMOIZE
      case 'h': memo_get(u(1)); return;           // BINGET
      case 'j': memo_get(u(4)); return;           // LONG_BINGET
      case 'c': {                                 // GLOBAL
        const std::string module = line();
        const std::string name = line();
        push(global(module, name));
        return;
      }
      case 0x93: {  // STACK_GLOBAL (protocol 4)
        const int32_t name = pop(), module = pop();
        if (obj(name).kind != Kind::Str || obj(module).kind != Kind::Str) fail("malformed pickle: STACK_GLOBAL");
        push(global(obj(module).s, obj(name).s));
        return;
      }
      case 'R': {  // REDUCE
        const int32_t args = pop(), fn = pop();
        push(reduce(fn, args));
        return;
      }
      case 'Q': push(persistent(pop())); return;  // BINPERSID
      case 'b': {  // BUILD: only an OrderedDict's state (its _metadata attribute) is expected; it is dropped
        pop();
        if (obj(top()).kind != Kind::Dict) fail("BUILD is only accepted on an OrderedDict");
        return;
      }
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(std::string("unsupported pickle opcode ") + hex);
      }
    }
  }

  const uint8_t* p_;
  uint64_t n_;
  std::string where_;
  uint64_t pos_ = 0, op_pos_ = 0;
  size_t items_ = 0;
  std::deque<Obj> objs_;  // a deque: references to objects stay valid while new ones are made
  std::vector<int32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, int32_t> memo_;
  std::vector<PendingTensor> tensors_;
  std::map<std::string, std::pair<DType, uint64_t>> storages_;
};

}  // namespace

std::vector<TensorRecord> read_torch_zip(const uint8_t* data, uint64_t size, const std::string& where) {
  const std::vector<ZipEntry> entries = read_zip_directory(data, size, where);
  // The archive's top folder (<stem>) is the one holding data.pkl.
  const ZipEntry* pkl = nullptr;
  std::string stem;
  for (const auto& e : entries) {
    const size_t slash = e.name.find('/');
    if (slash != std::string::npos && slash > 0 && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      if (pkl != nullptr) throw CheckpointError(where + ": the zip archive holds more than one data.pkl");
      pkl = &e;
      stem = e.name.substr(0, slash);
    }
  }
  if (pkl == nullptr) throw CheckpointError(where + ": no <archive>/data.pkl in the zip: not a torch.save file");
  std::map<std::string, const ZipEntry*> by_name;
  for (const auto& e : entries) by_name[e.name] = &e;
  const auto bo = by_name.find(stem + "/byteorder");
  if (bo != by_name.end()) {
    const std::string order(reinterpret_cast<const char*>(data + bo->second->offset),
                            std::min<uint64_t>(bo->second->size, 16));
    if (order != "little")
      throw CheckpointError(where + ": " + stem + "/byteorder is '" + text::printable(order) +
                            "', only 'little' is supported");
  }
  if (pkl->size > kMaxPickleBytes)
    throw CheckpointError(where + ": " + pkl->name + " is " + std::to_string(pkl->size) + " bytes, over the limit of " +
                          std::to_string(kMaxPickleBytes));

  Unpickler up(data + pkl->offset, pkl->size, where + ": " + pkl->name);
  std::vector<TensorRecord> out;
  for (auto& [name, t] : up.run()) {
    const std::string entry = stem + "/data/" + t.rec.storage_key;
    const auto it = by_name.find(entry);
    if (it == by_name.end())
      throw CheckpointError(where + ": tensor '" + name + "': storage entry '" + entry + "' is missing from the zip");
    const uint64_t esize = dtype_size(t.rec.dtype);
    if (t.storage_numel > it->second->size / esize)
      throw CheckpointError(where + ": tensor '" + name + "': storage entry '" + entry + "' holds " +
                            std::to_string(it->second->size) + " bytes, expected " + std::to_string(t.storage_numel) +
                            " x " + std::to_string(esize) + " (truncated file?)");
    t.rec.name = name;
    t.rec.offset = it->second->offset + (t.rec.nbytes == 0 ? 0 : t.elem_offset * esize);
    out.push_back(std::move(t.rec));
  }
  return out;
}

}  // namespace mx
