#include "grpc_web.h"

#include <gtest/gtest.h>

#include <string>

#include "wasentinel/common/bytes.h"
#include "wasentinel/testing/status_matchers.h"

namespace wasentinel::console {
namespace {

using ::wasentinel::testing::StatusIs;

std::string Frame(uint8_t flags, std::string_view payload) {
  std::string f(1, static_cast<char>(flags));
  const auto n = static_cast<uint32_t>(payload.size());
  for (int shift : {24, 16, 8, 0}) f.push_back(static_cast<char>((n >> shift) & 0xff));
  return f + std::string(payload);
}

TEST(GrpcWeb, ContentTypesNameTheFormat) {
  EXPECT_EQ(FormatOf("application/grpc-web"), WireFormat::kBinary);
  EXPECT_EQ(FormatOf("application/grpc-web+proto"), WireFormat::kBinary);
  EXPECT_EQ(FormatOf("Application/GRPC-Web-Text; charset=utf-8"), WireFormat::kText);
  EXPECT_EQ(FormatOf("application/grpc-web-text+proto"), WireFormat::kText);
  EXPECT_EQ(FormatOf("application/grpc-web+json"), std::nullopt);
  EXPECT_EQ(FormatOf("application/grpc"), std::nullopt);
  EXPECT_EQ(FormatOf(""), std::nullopt);
  EXPECT_EQ(ContentTypeOf(WireFormat::kText), "application/grpc-web-text+proto");
}

TEST(GrpcWeb, DecodesOneMessageInEitherFormat) {
  const std::string body = Frame(0, "hello");
  EXPECT_EQ(DecodeRequest(body, WireFormat::kBinary, 100).value(), "hello");
  EXPECT_EQ(DecodeRequest(Base64Encode(AsBytes(body)), WireFormat::kText, 100).value(), "hello");
  // A text body may arrive as padded base64 chunks one after another.
  const std::string chunked =
      Base64Encode(AsBytes(body.substr(0, 4))) + Base64Encode(AsBytes(body.substr(4)));
  EXPECT_EQ(DecodeRequest(chunked, WireFormat::kText, 100).value(), "hello");
  EXPECT_EQ(DecodeRequest(Frame(0, ""), WireFormat::kBinary, 100).value(), "");
}

TEST(GrpcWeb, RefusesWhatItCannotTakeWithTheReason) {
  auto refused = [](std::string_view body, WireFormat f = WireFormat::kBinary) {
    return DecodeRequest(body, f, 8).status();
  };
  EXPECT_THAT(refused(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(refused(Frame(0, "hello").substr(0, 7)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(refused(Frame(1, "hello")), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(refused(Frame(0x80, "grpc-status: 0\r\n")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(refused(Frame(0x40, "x")), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(refused(Frame(0, "a") + Frame(0, "b")), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(refused(Frame(0, "too long, over 8")),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(refused("not base64!", WireFormat::kText),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // A length far beyond the body is refused by the limit before anything is read.
  EXPECT_THAT(std::string(refused(std::string_view("\x00\xff\xff\xff\xff", 5)).message()),
              ::testing::HasSubstr("over the limit"));
  EXPECT_THAT(std::string(refused(Frame(1, "x")).message()), ::testing::HasSubstr("compressed"));
}

TEST(GrpcWeb, EncodesMessagesAndTrailers) {
  EXPECT_EQ(EncodeMessage("hi", WireFormat::kBinary), Frame(0, "hi"));
  EXPECT_EQ(EncodeMessage("hi", WireFormat::kText), Base64Encode(AsBytes(Frame(0, "hi"))));
  EXPECT_EQ(EncodeTrailers(5, "no session 42\n", {{"X-Retry", "no"}}, WireFormat::kBinary),
            Frame(0x80, "grpc-status: 5\r\ngrpc-message: no session 42%0A\r\nx-retry: no\r\n"));
  EXPECT_EQ(EncodeTrailers(0, "", {}, WireFormat::kBinary), Frame(0x80, "grpc-status: 0\r\n"));
  EXPECT_EQ(PercentEncode("100% sure\xc3\xa9"), "100%25 sure%C3%A9");
}

}  // namespace
}  // namespace wasentinel::console
