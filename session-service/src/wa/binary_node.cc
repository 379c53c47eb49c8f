#include "binary_node.h"

#include <zlib.h>

#include <charconv>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "token_tables.h"
#include "wasentinel/common/logging.h"
#include "wasentinel/common/status_macros.h"

namespace wasentinel::wa {
namespace {

// Tags of the string and list forms (as whatsmeow does it).
enum Tag : uint8_t {
  kListEmpty = 0,
  kDictionary0 = 236,
  kDictionary3 = 239,
  kInteropJid = 245,
  kFbJid = 246,
  kAdJid = 247,
  kList8 = 248,
  kList16 = 249,
  kJidPair = 250,
  kHex8 = 251,
  kBinary8 = 252,
  kBinary20 = 253,
  kBinary32 = 254,
  kNibble8 = 255,
};
constexpr size_t kPackedMax = 127;

struct TokenIndex {
  int dict;  // -1: single byte
  uint8_t index;
};

const absl::flat_hash_map<std::string_view, TokenIndex>& TokenMap() {
  // Built once from the constant tables and never modified: immutable after construction.
  static const auto* map = [] {
    auto* m = new absl::flat_hash_map<std::string_view, TokenIndex>();
    for (size_t i = 0; i < tokens::kSingleByte.size(); ++i) {
      m->emplace(tokens::kSingleByte[i], TokenIndex{-1, static_cast<uint8_t>(i)});
    }
    for (size_t d = 0; d < tokens::kDoubleByte.size(); ++d) {
      for (size_t i = 0; i < tokens::kDoubleByte[d].size(); ++i) {
        m->emplace(tokens::kDoubleByte[d][i],
                   TokenIndex{static_cast<int>(d), static_cast<uint8_t>(i)});
      }
    }
    return m;
  }();
  return *map;
}

bool IsNibble(std::string_view s) {
  if (s.empty() || s.size() > kPackedMax) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  }
  return true;
}

bool IsHex(std::string_view s) {
  if (s.empty() || s.size() > kPackedMax) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) return false;
  }
  return true;
}

uint8_t PackNibble(char c) {
  if (c == '-') return 10;
  if (c == '.') return 11;
  if (c == '\0') return 15;
  return static_cast<uint8_t>(c - '0');
}
uint8_t PackHex(char c) {
  if (c == '\0') return 15;
  if (c >= 'A' && c <= 'F') return static_cast<uint8_t>(10 + c - 'A');
  return static_cast<uint8_t>(c - '0');
}

// The AD_JID domain byte of the servers AD_JID can carry; nullopt for any other server.
std::optional<uint8_t> DomainTypeOf(std::string_view server) {
  if (server == "s.whatsapp.net") return 0;
  if (server == "lid") return 1;
  if (server == "hosted") return 128;
  if (server == "hosted.lid") return 129;
  return std::nullopt;
}

class Encoder {
 public:
  explicit Encoder(Bytes& out) : out_(out) {}

  absl::Status WriteNode(const Node& node) {
    if (node.tag.empty()) return absl::InvalidArgumentError("node with an empty tag");
    const bool has_content = !std::holds_alternative<std::monostate>(node.content);
    WriteListStart(2 * node.attrs.size() + 1 + (has_content ? 1 : 0));
    WAS_RETURN_IF_ERROR(WriteString(node.tag));
    for (const auto& [key, value] : node.attrs) {
      WAS_RETURN_IF_ERROR(WriteString(key));
      WAS_RETURN_IF_ERROR(WriteString(value));
    }
    if (const auto* s = std::get_if<std::string>(&node.content)) {
      WAS_RETURN_IF_ERROR(WriteString(*s));
    } else if (const auto* b = std::get_if<Bytes>(&node.content)) {
      WAS_RETURN_IF_ERROR(WriteByteLength(b->size()));
      Append(out_, *b);
    } else if (const auto* children = std::get_if<std::vector<Node>>(&node.content)) {
      WriteListStart(children->size());
      for (const Node& child : *children) WAS_RETURN_IF_ERROR(WriteNode(child));
    }
    return absl::OkStatus();
  }

 private:
  void Push(uint8_t b) { out_.push_back(b); }

  void WriteListStart(size_t size) {
    if (size == 0) {
      Push(kListEmpty);
    } else if (size < 256) {
      Push(kList8);
      Push(static_cast<uint8_t>(size));
    } else {
      Push(kList16);
      Push(static_cast<uint8_t>(size >> 8));
      Push(static_cast<uint8_t>(size));
    }
  }

  absl::Status WriteByteLength(size_t length) {
    if (length >= (uint64_t{1} << 32)) {
      return absl::InvalidArgumentError(absl::StrCat("string too large to encode: ", length));
    }
    if (length >= (1u << 20)) {
      Push(kBinary32);
      for (int shift = 24; shift >= 0; shift -= 8) Push(static_cast<uint8_t>(length >> shift));
    } else if (length >= 256) {
      Push(kBinary20);
      Push(static_cast<uint8_t>((length >> 16) & 0x0f));
      Push(static_cast<uint8_t>(length >> 8));
      Push(static_cast<uint8_t>(length));
    } else {
      Push(kBinary8);
      Push(static_cast<uint8_t>(length));
    }
    return absl::OkStatus();
  }

  absl::Status WriteRaw(std::string_view s) {
    WAS_RETURN_IF_ERROR(WriteByteLength(s.size()));
    Append(out_, AsBytes(s));
    return absl::OkStatus();
  }

  void WritePacked(std::string_view s, bool nibble) {
    Push(nibble ? kNibble8 : kHex8);
    uint8_t rounded = static_cast<uint8_t>((s.size() + 1) / 2);
    if (s.size() % 2 != 0) rounded |= 0x80;
    Push(rounded);
    auto pack = nibble ? PackNibble : PackHex;
    for (size_t i = 0; i + 1 < s.size(); i += 2) {
      Push(static_cast<uint8_t>(pack(s[i]) << 4 | pack(s[i + 1])));
    }
    if (s.size() % 2 != 0) Push(static_cast<uint8_t>(pack(s.back()) << 4 | pack('\0')));
  }

  // A string that reads as a JID is written as JID_PAIR (no device) or AD_JID (device present),
  // as Baileys does. Strings that only look like JIDs (agent part, bad device, nested '@',
  // empty server) are written raw so that nothing is lost.
  bool TryWriteJid(std::string_view s) {
    const size_t at = s.find('@');
    if (at == std::string_view::npos) return false;
    std::string_view user = s.substr(0, at);
    std::string_view server = s.substr(at + 1);
    if (server.empty() || server.find('@') != std::string_view::npos) return false;
    if (user.find('_') != std::string_view::npos) return false;
    int device = -1;
    if (size_t colon = user.find(':'); colon != std::string_view::npos) {
      std::string_view dev = user.substr(colon + 1);
      user = user.substr(0, colon);
      int value = 0;
      auto [ptr, ec] = std::from_chars(dev.data(), dev.data() + dev.size(), value);
      if (dev.empty() || ec != std::errc() || ptr != dev.data() + dev.size() || value < 0 ||
          value > 255 || user.find(':') != std::string_view::npos) {
        return false;
      }
      device = value;
    }
    if (device >= 0) {
      // AD_JID names its server by a domain byte, so only four servers fit; anything else
      // with a device part is written raw rather than lose its server.
      const std::optional<uint8_t> domain = DomainTypeOf(server);
      if (user.empty() || !domain) return false;
      Push(kAdJid);
      Push(*domain);
      Push(static_cast<uint8_t>(device));
      (void)WriteString(user);
    } else {
      Push(kJidPair);
      if (user.empty()) {
        Push(kListEmpty);
      } else {
        (void)WriteString(user);
      }
      (void)WriteString(server);
    }
    return true;
  }

  absl::Status WriteString(std::string_view s) {
    const auto& map = TokenMap();
    if (auto it = map.find(s); it != map.end()) {
      if (it->second.dict >= 0) Push(static_cast<uint8_t>(kDictionary0 + it->second.dict));
      Push(it->second.index);
      return absl::OkStatus();
    }
    if (IsNibble(s)) {
      WritePacked(s, /*nibble=*/true);
    } else if (IsHex(s)) {
      WritePacked(s, /*nibble=*/false);
    } else if (!TryWriteJid(s)) {
      return WriteRaw(s);
    }
    return absl::OkStatus();
  }

  Bytes& out_;
};

class Decoder {
 public:
  Decoder(ByteView in, const DecodeLimits& limits) : in_(in), limits_(limits) {}

  absl::StatusOr<Node> ReadNode(size_t depth) {
    if (depth > limits_.max_depth) return Error("nodes nested too deeply");
    WAS_ASSIGN_OR_RETURN(uint8_t list_tag, ReadByte());
    WAS_ASSIGN_OR_RETURN(size_t size, ReadListSize(list_tag));
    if (size == 0) return Error("node with an empty list");
    Node node;
    WAS_ASSIGN_OR_RETURN(uint8_t tag_byte, ReadByte());
    WAS_ASSIGN_OR_RETURN(node.tag, ReadString(tag_byte));
    if (node.tag.empty()) return Error("node with an empty tag");
    const size_t attr_count = (size - 1) >> 1;
    // Every attribute takes at least two bytes; refuse counts the input cannot hold.
    if (attr_count > Remaining() / 2) return Error("attribute count exceeds the input");
    node.attrs.reserve(attr_count);
    for (size_t i = 0; i < attr_count; ++i) {
      WAS_ASSIGN_OR_RETURN(uint8_t kb, ReadByte());
      WAS_ASSIGN_OR_RETURN(std::string key, ReadString(kb));
      WAS_ASSIGN_OR_RETURN(uint8_t vb, ReadByte());
      WAS_ASSIGN_OR_RETURN(std::string value, ReadString(vb));
      node.attrs.emplace_back(std::move(key), std::move(value));
    }
    if (size % 2 == 0) {
      WAS_ASSIGN_OR_RETURN(uint8_t ct, ReadByte());
      if (ct == kListEmpty || ct == kList8 || ct == kList16) {
        WAS_ASSIGN_OR_RETURN(size_t n, ReadListSize(ct));
        std::vector<Node> children;
        // Every child takes at least two bytes; refuse counts the input cannot hold.
        if (n > Remaining() / 2) return Error("child count exceeds the input");
        children.reserve(n);
        for (size_t i = 0; i < n; ++i) {
          WAS_ASSIGN_OR_RETURN(Node child, ReadNode(depth + 1));
          children.push_back(std::move(child));
        }
        node.content = std::move(children);
      } else if (ct == kBinary8 || ct == kBinary20 || ct == kBinary32) {
        WAS_ASSIGN_OR_RETURN(size_t n, ReadBinaryLength(ct));
        WAS_ASSIGN_OR_RETURN(ByteView b, ReadBytes(n));
        node.content = Bytes(b.begin(), b.end());
      } else {
        WAS_ASSIGN_OR_RETURN(std::string s, ReadString(ct));
        node.content = std::move(s);
      }
    }
    return node;
  }

  size_t Remaining() const { return in_.size() - pos_; }

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("binary node: ", Sv(what), " at offset ", pos_));
  }

 private:
  absl::StatusOr<uint8_t> ReadByte() {
    if (pos_ >= in_.size()) return Error("unexpected end of input");
    return in_[pos_++];
  }

  absl::StatusOr<ByteView> ReadBytes(size_t n) {
    if (n > Remaining()) return Error(absl::StrCat("length ", n, " exceeds the input"));
    ByteView v = in_.subspan(pos_, n);
    pos_ += n;
    return v;
  }

  absl::StatusOr<uint32_t> ReadInt(int n) {
    WAS_ASSIGN_OR_RETURN(ByteView b, ReadBytes(n));
    uint32_t v = 0;
    for (uint8_t x : b) v = v << 8 | x;
    return v;
  }

  absl::StatusOr<size_t> ReadListSize(uint8_t tag) {
    switch (tag) {
      case kListEmpty:
        return 0;
      case kList8:
        return ReadByte();
      case kList16:
        return ReadInt(2);
      default:
        return Error(absl::StrCat("invalid list tag ", tag));
    }
  }

  absl::StatusOr<size_t> ReadBinaryLength(uint8_t tag) {
    if (tag == kBinary8) return ReadByte();
    if (tag == kBinary20) {
      WAS_ASSIGN_OR_RETURN(uint32_t v, ReadInt(3));
      return v & 0xfffff;
    }
    return ReadInt(4);
  }

  absl::StatusOr<std::string> ReadPacked(uint8_t tag) {
    WAS_ASSIGN_OR_RETURN(uint8_t start, ReadByte());
    const size_t pairs = start & 0x7f;
    WAS_ASSIGN_OR_RETURN(ByteView b, ReadBytes(pairs));
    std::string out;
    out.reserve(pairs * 2);
    for (uint8_t x : b) {
      for (uint8_t v : {static_cast<uint8_t>(x >> 4), static_cast<uint8_t>(x & 0x0f)}) {
        if (tag == kHex8) {
          out.push_back(static_cast<char>(v < 10 ? '0' + v : 'A' + v - 10));
        } else if (v <= 9) {
          out.push_back(static_cast<char>('0' + v));
        } else if (v == 10) {
          out.push_back('-');
        } else if (v == 11) {
          out.push_back('.');
        } else if (v == 15) {
          out.push_back('\0');
        } else {
          return Error(absl::StrCat("invalid nibble ", v));
        }
      }
    }
    if ((start & 0x80) != 0) {
      if (out.empty()) return Error("odd packed string of length 0");
      out.pop_back();
    }
    if (tag == kNibble8 && out.find('\0') != std::string::npos) {
      return Error("pad nibble inside a packed string");
    }
    return out;
  }

  // `in_jid`: reading a part of a JID, which may not itself be a JID (no legitimate encoder
  // nests them, and unbounded nesting would recurse without limit).
  absl::StatusOr<std::string> ReadString(uint8_t tag, bool in_jid = false) {
    if (in_jid && (tag == kJidPair || tag == kAdJid || tag == kFbJid || tag == kInteropJid)) {
      return Error("a JID nested inside a JID");
    }
    if (tag >= 1 && tag < tokens::kSingleByte.size()) return std::string(tokens::kSingleByte[tag]);
    switch (tag) {
      case kListEmpty:
        return std::string();
      case kDictionary0:
      case kDictionary0 + 1:
      case kDictionary0 + 2:
      case kDictionary3: {
        WAS_ASSIGN_OR_RETURN(uint8_t index, ReadByte());
        return std::string(tokens::kDoubleByte[tag - kDictionary0][index]);
      }
      case kBinary8:
      case kBinary20:
      case kBinary32: {
        WAS_ASSIGN_OR_RETURN(size_t n, ReadBinaryLength(tag));
        WAS_ASSIGN_OR_RETURN(ByteView b, ReadBytes(n));
        return ToString(b);
      }
      case kJidPair: {
        WAS_ASSIGN_OR_RETURN(uint8_t ub, ReadByte());
        WAS_ASSIGN_OR_RETURN(std::string user, ReadString(ub, /*in_jid=*/true));
        WAS_ASSIGN_OR_RETURN(uint8_t sb, ReadByte());
        WAS_ASSIGN_OR_RETURN(std::string server, ReadString(sb, /*in_jid=*/true));
        if (server.empty()) return Error("JID pair without a server");
        return absl::StrCat(user, "@", server);
      }
      case kAdJid: {
        WAS_ASSIGN_OR_RETURN(uint8_t domain, ReadByte());
        WAS_ASSIGN_OR_RETURN(uint8_t device, ReadByte());
        WAS_ASSIGN_OR_RETURN(uint8_t ub, ReadByte());
        WAS_ASSIGN_OR_RETURN(std::string user, ReadString(ub, /*in_jid=*/true));
        std::string_view server = domain == 1     ? "lid"
                                  : domain == 128 ? "hosted"
                                  : domain == 129 ? "hosted.lid"
                                                  : "s.whatsapp.net";
        // Device 0 is written without its ":0", as both libraries print it.
        return device == 0 ? absl::StrCat(user, "@", Sv(server))
                           : absl::StrCat(user, ":", device, "@", Sv(server));
      }
      case kFbJid: {
        WAS_ASSIGN_OR_RETURN(uint8_t ub, ReadByte());
        WAS_ASSIGN_OR_RETURN(std::string user, ReadString(ub, /*in_jid=*/true));
        WAS_ASSIGN_OR_RETURN(uint32_t device, ReadInt(2));
        WAS_ASSIGN_OR_RETURN(uint8_t sb, ReadByte());
        WAS_ASSIGN_OR_RETURN(std::string server, ReadString(sb, /*in_jid=*/true));
        return absl::StrCat(user, ":", device, "@", server);
      }
      case kInteropJid: {
        WAS_ASSIGN_OR_RETURN(uint8_t ub, ReadByte());
        WAS_ASSIGN_OR_RETURN(std::string user, ReadString(ub, /*in_jid=*/true));
        WAS_ASSIGN_OR_RETURN(uint32_t device, ReadInt(2));
        WAS_ASSIGN_OR_RETURN(uint32_t integrator, ReadInt(2));
        WAS_ASSIGN_OR_RETURN(uint8_t sb, ReadByte());
        WAS_ASSIGN_OR_RETURN(std::string server, ReadString(sb, /*in_jid=*/true));
        return absl::StrCat(integrator, "-", user, ":", device, "@", server);
      }
      case kHex8:
      case kNibble8:
        return ReadPacked(tag);
      default:
        return Error(absl::StrCat("invalid string tag ", tag));
    }
  }

  ByteView in_;
  const DecodeLimits& limits_;
  size_t pos_ = 0;
};

absl::StatusOr<Bytes> Inflate(ByteView in, size_t max_out) {
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) return absl::InternalError("zlib inflateInit failed");
  Bytes out;
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (out.size() >= max_out) {
      inflateEnd(&zs);
      return absl::InvalidArgumentError("binary node: compressed frame inflates beyond the limit");
    }
    const size_t chunk = std::min<size_t>(64 * 1024, max_out - out.size());
    const size_t old = out.size();
    out.resize(old + chunk);
    zs.next_out = out.data() + old;
    zs.avail_out = static_cast<uInt>(chunk);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(old + chunk - zs.avail_out);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      return absl::InvalidArgumentError(absl::StrCat("binary node: bad zlib data (", rc, ")"));
    }
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      return absl::InvalidArgumentError("binary node: truncated zlib data");
    }
  }
  inflateEnd(&zs);
  return out;
}

// `redact`: JIDs' user parts masked, contents shown by size only (see NodeToLogXml).
void AppendXml(const Node& node, size_t max_bytes, bool redact, int indent, std::string& out) {
  out.append(indent * 2, ' ');
  absl::StrAppend(&out, "<", node.tag);
  for (const auto& [k, v] : node.attrs) {
    absl::StrAppend(&out, " ", k, "=\"",
                    redact && v.find('@') != std::string::npos ? MaskJid(v) : v, "\"");
  }
  if (std::holds_alternative<std::monostate>(node.content)) {
    out.append("/>\n");
    return;
  }
  out.append(">");
  if (const auto* s = std::get_if<std::string>(&node.content)) {
    if (redact) {
      absl::StrAppend(&out, "<!-- ", s->size(), " characters -->");
    } else {
      out.append(*s);
    }
  } else if (const auto* b = std::get_if<Bytes>(&node.content); b && redact) {
    absl::StrAppend(&out, "<!-- ", b->size(), " bytes -->");
  } else if (b) {
    const bool cut = max_bytes != 0 && b->size() > max_bytes;
    ByteView shown(b->data(), cut ? max_bytes : b->size());
    absl::StrAppend(&out, "<!-- ", b->size(), " bytes -->", HexEncode(shown), cut ? "…" : "");
  } else {
    out.append("\n");
    for (const Node& child : std::get<std::vector<Node>>(node.content)) {
      AppendXml(child, max_bytes, redact, indent + 1, out);
    }
    out.append(indent * 2, ' ');
  }
  absl::StrAppend(&out, "</", node.tag, ">\n");
}

}  // namespace

const std::string* Node::Attr(std::string_view key) const {
  for (const auto& [k, v] : attrs) {
    if (k == key) return &v;
  }
  return nullptr;
}

std::string Node::AttrOr(std::string_view key, std::string_view fallback) const {
  const std::string* v = Attr(key);
  return v ? *v : std::string(fallback);
}

const std::vector<Node>& Node::Children() const {
  static const std::vector<Node> kNone;
  const auto* c = std::get_if<std::vector<Node>>(&content);
  return c ? *c : kNone;
}

const Node* Node::Child(std::string_view child_tag) const {
  for (const Node& c : Children()) {
    if (c.tag == child_tag) return &c;
  }
  return nullptr;
}

ByteView Node::ContentBytes() const {
  if (const auto* b = std::get_if<Bytes>(&content)) return *b;
  if (const auto* s = std::get_if<std::string>(&content)) return AsBytes(*s);
  return {};
}

Node MakeNode(std::string tag, Node::Attrs attrs, Node::Content content) {
  return Node{std::move(tag), std::move(attrs), std::move(content)};
}

absl::StatusOr<Bytes> EncodeNode(const Node& node) {
  Bytes out;
  out.reserve(64);
  out.push_back(0x00);
  Encoder enc(out);
  WAS_RETURN_IF_ERROR(enc.WriteNode(node));
  return out;
}

absl::StatusOr<Node> DecodeNodeBody(ByteView body, const DecodeLimits& limits) {
  Decoder dec(body, limits);
  WAS_ASSIGN_OR_RETURN(Node node, dec.ReadNode(0));
  if (dec.Remaining() != 0) return dec.Error("trailing bytes after the node");
  return node;
}

absl::StatusOr<Node> DecodeNode(ByteView frame, const DecodeLimits& limits) {
  if (frame.empty()) return absl::InvalidArgumentError("binary node: empty frame");
  const uint8_t flags = frame[0];
  if ((flags & 0x02) != 0) {
    WAS_ASSIGN_OR_RETURN(Bytes inflated, Inflate(frame.subspan(1), limits.max_inflated_bytes));
    return DecodeNodeBody(inflated, limits);
  }
  return DecodeNodeBody(frame.subspan(1), limits);
}

std::string NodeToXml(const Node& node, size_t max_bytes) {
  std::string out;
  AppendXml(node, max_bytes, /*redact=*/false, 0, out);
  return out;
}

std::string NodeToLogXml(const Node& node) {
  std::string out;
  AppendXml(node, 0, /*redact=*/true, 0, out);
  return out;
}

absl::StatusOr<Jid> Jid::Parse(std::string_view text) {
  const size_t at = text.find('@');
  if (at == std::string_view::npos || at + 1 == text.size()) {
    return absl::InvalidArgumentError(absl::StrCat("not a JID: \"", Sv(text), "\""));
  }
  Jid jid;
  jid.server = std::string(text.substr(at + 1));
  std::string_view user = text.substr(0, at);
  if (size_t colon = user.find(':'); colon != std::string_view::npos) {
    std::string_view dev = user.substr(colon + 1);
    int value = 0;
    auto [ptr, ec] = std::from_chars(dev.data(), dev.data() + dev.size(), value);
    if (dev.empty() || ec != std::errc() || ptr != dev.data() + dev.size() || value < 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad device in JID \"", Sv(text), "\""));
    }
    jid.device = value;
    user = user.substr(0, colon);
  }
  if (size_t underscore = user.find('_'); underscore != std::string_view::npos) {
    user = user.substr(0, underscore);  // the agent part is not kept
  }
  jid.user = std::string(user);
  return jid;
}

std::string Jid::ToString() const {
  return device >= 0 ? absl::StrCat(user, ":", device, "@", server)
                     : absl::StrCat(user, "@", server);
}

}  // namespace wasentinel::wa
