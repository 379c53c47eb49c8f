#include "grpc_web.h"

#include <sodium.h>

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel::console {
namespace {

constexpr uint8_t kTrailersFlag = 0x80;
constexpr uint8_t kCompressedFlag = 0x01;
constexpr size_t kFrameHeader = 5;

// A body in the text format: one or more base64 chunks, each padded, one after another.
absl::StatusOr<std::string> DecodeText(std::string_view b64) {
  std::string out(b64.size() / 4 * 3 + 3, '\0');
  size_t used = 0;
  const char* at = b64.data();
  const char* const end = b64.data() + b64.size();
  while (at < end) {
    size_t len = 0;
    const char* chunk_end = nullptr;
    if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data() + used), out.size() - used,
                          at, static_cast<size_t>(end - at), nullptr, &len, &chunk_end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        chunk_end == at) {
      return absl::InvalidArgumentError(
          absl::StrCat("gRPC-Web text body is not base64 at offset ", at - b64.data()));
    }
    used += len;
    at = chunk_end;
  }
  out.resize(used);
  return out;
}

void AppendFrame(std::string& out, uint8_t flags, std::string_view payload) {
  const auto n = static_cast<uint32_t>(payload.size());
  out.push_back(static_cast<char>(flags));
  out.push_back(static_cast<char>(n >> 24));
  out.push_back(static_cast<char>(n >> 16));
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n));
  out.append(payload);
}

std::string InFormat(std::string frame, WireFormat format) {
  if (format == WireFormat::kBinary) return frame;
  return Base64Encode(AsBytes(frame));
}

}  // namespace

std::optional<WireFormat> FormatOf(std::string_view content_type) {
  const std::string_view head = content_type.substr(0, content_type.find(';'));
  const std::string type = absl::AsciiStrToLower(
      absl::StripAsciiWhitespace(absl::string_view(head.data(), head.size())));
  if (type == "application/grpc-web" || type == "application/grpc-web+proto") {
    return WireFormat::kBinary;
  }
  if (type == "application/grpc-web-text" || type == "application/grpc-web-text+proto") {
    return WireFormat::kText;
  }
  return std::nullopt;
}

std::string_view ContentTypeOf(WireFormat format) {
  return format == WireFormat::kBinary ? "application/grpc-web+proto"
                                       : "application/grpc-web-text+proto";
}

absl::StatusOr<std::string> DecodeRequest(std::string_view body, WireFormat format,
                                          size_t max_message) {
  std::string decoded;
  if (format == WireFormat::kText) {
    auto text = DecodeText(body);
    if (!text.ok()) return text.status();
    decoded = *std::move(text);
    body = decoded;
  }
  if (body.size() < kFrameHeader) {
    return absl::InvalidArgumentError(absl::StrCat("gRPC-Web request body of ", body.size(),
                                                   " bytes is shorter than a frame header"));
  }
  const auto flags = static_cast<uint8_t>(body[0]);
  const uint32_t len = (uint32_t{static_cast<uint8_t>(body[1])} << 24) |
                       (uint32_t{static_cast<uint8_t>(body[2])} << 16) |
                       (uint32_t{static_cast<uint8_t>(body[3])} << 8) |
                       uint32_t{static_cast<uint8_t>(body[4])};
  if (flags & kTrailersFlag) {
    return absl::InvalidArgumentError("gRPC-Web request starts with a trailers frame");
  }
  if (flags & kCompressedFlag) {
    return absl::InvalidArgumentError(
        "gRPC-Web request message is compressed; send it uncompressed (no grpc-encoding)");
  }
  if (flags != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gRPC-Web frame flags 0x", absl::Hex(flags), " are not defined"));
  }
  if (len > max_message) {
    return absl::ResourceExhaustedError(absl::StrCat("gRPC-Web request message of ", len,
                                                     " bytes is over the limit of ", max_message));
  }
  if (body.size() - kFrameHeader < len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gRPC-Web request frame truncated: ", body.size() - kFrameHeader, " of ", len, " bytes"));
  }
  if (body.size() - kFrameHeader > len) {
    return absl::InvalidArgumentError(
        "gRPC-Web request carries more than one message; this call takes one");
  }
  return std::string(body.substr(kFrameHeader, len));
}

std::string EncodeMessage(std::string_view message, WireFormat format) {
  std::string frame;
  frame.reserve(kFrameHeader + message.size());
  AppendFrame(frame, 0, message);
  return InFormat(std::move(frame), format);
}

std::string EncodeTrailers(int code, std::string_view message,
                           const std::vector<std::pair<std::string, std::string>>& metadata,
                           WireFormat format) {
  std::string block = absl::StrCat("grpc-status: ", code, "\r\n");
  if (!message.empty()) absl::StrAppend(&block, "grpc-message: ", PercentEncode(message), "\r\n");
  for (const auto& [key, value] : metadata) {
    absl::StrAppend(&block, absl::AsciiStrToLower(key), ": ", value, "\r\n");
  }
  std::string frame;
  AppendFrame(frame, kTrailersFlag, block);
  return InFormat(std::move(frame), format);
}

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto b = static_cast<uint8_t>(c);
    if (b >= 0x20 && b <= 0x7e && b != '%') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 0x0f]);
    }
  }
  return out;
}

}  // namespace wasentinel::console
