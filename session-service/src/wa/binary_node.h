// The WhatsApp Web binary node ("WABinary") codec: the XML-like stanzas that travel, encrypted,
// inside every post-handshake frame.
//
// Source: whatsmeow binary/encoder.go + decoder.go and Baileys
// src/WABinary/encode.ts + decode.ts. The encoder chooses string forms exactly as Baileys 6.7.23
// does, so for the same node it produces the same bytes; the decoder accepts everything either
// library writes (tokens, double-byte dictionaries, JID_PAIR, AD_JID, FB_JID, INTEROP_JID,
// NIBBLE_8 / HEX_8 packed strings, BINARY_8/20/32) and refuses hostile input with
// INVALID_ARGUMENT instead of reading out of bounds.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel::wa {

/// One stanza: `<tag k1="v1" ...>content</tag>`.
///
/// Attribute values are strings; JIDs appear in their text form (`user@server`,
/// `user:device@server`). Attribute order is kept, since it decides the encoded bytes.
/// Content is nothing, a string (token/packed/JID/raw string form), raw bytes (BINARY_* form),
/// or child nodes. As in Baileys, a string content that is neither a token, packed nor a JID is
/// written in BINARY_* form and so decodes as bytes.
struct Node {
  using Attrs = std::vector<std::pair<std::string, std::string>>;
  using Content = std::variant<std::monostate, std::string, Bytes, std::vector<Node>>;

  std::string tag;
  Attrs attrs;
  Content content;

  /// The value of attribute `key`, or nullptr.
  const std::string* Attr(std::string_view key) const;
  /// The value of attribute `key`, or `fallback`.
  std::string AttrOr(std::string_view key, std::string_view fallback = "") const;
  /// Child nodes (empty when the content is not a list).
  const std::vector<Node>& Children() const;
  /// The first child with tag `tag`, or nullptr.
  const Node* Child(std::string_view tag) const;
  /// Bytes content (a string content is viewed as its bytes), or an empty view.
  ByteView ContentBytes() const;

  friend bool operator==(const Node&, const Node&) = default;
};

/// Builds a node; `children` may be empty.
Node MakeNode(std::string tag, Node::Attrs attrs = {}, Node::Content content = {});

/// Limits that bound the decoder's work on hostile input.
struct DecodeLimits {
  size_t max_depth = 64;  ///< nesting of child lists
  /// zlib output of one frame: the protocol's frame limit (2^24). Decoded nodes take up to
  /// ~30x their encoded size in memory, so this also bounds the decoder's allocations.
  size_t max_inflated_bytes = 16u << 20;
};

/// Encodes `node` as a frame plaintext: flag byte 0x00 followed by the node.
/// INVALID_ARGUMENT for an empty tag or a string too long for the format (≥ 2^32 bytes).
absl::StatusOr<Bytes> EncodeNode(const Node& node);

/// Decodes a frame plaintext: the flag byte (bit 0x02 = zlib-compressed body), then one node.
/// INVALID_ARGUMENT on truncated, malformed or trailing data, with the offset in the message.
absl::StatusOr<Node> DecodeNode(ByteView frame, const DecodeLimits& limits = {});

/// Decodes a node without the flag byte (an already-inflated body).
absl::StatusOr<Node> DecodeNodeBody(ByteView body, const DecodeLimits& limits = {});

/// A readable, XML-like rendering for logs and the wa-node tool. Bytes content is shown as hex,
/// truncated after `max_bytes` bytes (0 = no limit).
std::string NodeToXml(const Node& node, size_t max_bytes = 64);

/// The rendering for logs at any level: every attribute value holding a JID has its user part
/// masked (MaskJid, common/logging.h) and every content is shown by its size only, so phone
/// numbers, QR refs, keys and message bodies never reach a log.
std::string NodeToLogXml(const Node& node);

/// Parses a JID text form `user[_agent][:device]@server`.
struct Jid {
  std::string user;
  std::string server;
  int device = -1;  ///< -1: no device part
  static absl::StatusOr<Jid> Parse(std::string_view text);
  std::string ToString() const;
};

/// The server JID `@s.whatsapp.net`, the `to` of every iq a client sends.
inline constexpr std::string_view kServerJid = "@s.whatsapp.net";

}  // namespace wasentinel::wa
