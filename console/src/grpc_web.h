// gRPC-Web framing, as the console's bridge speaks it to browsers: the request body a browser
// sends for a call and the frames of the answer. The wire format is the gRPC-Web protocol
// (grpc/grpc, doc/PROTOCOL-WEB.md): a frame is one flag byte (0x80: trailers; 0x01: compressed)
// and a 4-byte big-endian length, then that many bytes; the answer's last frame carries the
// trailers as HTTP/1 header lines ("grpc-status: 0\r\n"). In the text format
// (application/grpc-web-text) the same bytes travel base64-encoded, possibly as several padded
// base64 chunks one after another.
//
// Everything here reads input a browser controls: it refuses what it cannot parse with
// INVALID_ARGUMENT and never reads past the body (tests/fuzz/grpc_web_fuzzer.cc).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace wasentinel::console {

enum class WireFormat {
  kBinary,  ///< application/grpc-web, application/grpc-web+proto
  kText,    ///< application/grpc-web-text, application/grpc-web-text+proto (base64)
};

/// The format a request's Content-Type names (parameters such as "; charset=utf-8" ignored,
/// case-insensitive); nullopt when it is not gRPC-Web with protobuf messages.
std::optional<WireFormat> FormatOf(std::string_view content_type);

/// The Content-Type of an answer in `format` ("application/grpc-web+proto" or
/// "application/grpc-web-text+proto").
std::string_view ContentTypeOf(WireFormat format);

/// The request message of a call from its body: exactly one uncompressed data frame (unary and
/// server-streaming calls send one message). INVALID_ARGUMENT, naming what is wrong, for a body
/// that is not valid base64 (text format), a truncated frame, a compressed one (the bridge
/// negotiates no grpc-encoding), a trailers frame or more than one message; RESOURCE_EXHAUSTED
/// for a message longer than `max_message` bytes.
absl::StatusOr<std::string> DecodeRequest(std::string_view body, WireFormat format,
                                          size_t max_message);

/// One data frame carrying `message`, in `format` (text: one padded base64 chunk).
std::string EncodeMessage(std::string_view message, WireFormat format);

/// The trailers frame that ends an answer: `grpc-status`, `grpc-message` (percent-encoded) and
/// `metadata` (keys lower-case; values as given, binary `-bin` values already base64), in
/// `format`.
std::string EncodeTrailers(int code, std::string_view message,
                           const std::vector<std::pair<std::string, std::string>>& metadata,
                           WireFormat format);

/// grpc-message's percent-encoding (gRPC over HTTP/2, "Responses"): every byte outside
/// 0x20–0x7E, and '%' itself, as %XX.
std::string PercentEncode(std::string_view text);

}  // namespace wasentinel::console
