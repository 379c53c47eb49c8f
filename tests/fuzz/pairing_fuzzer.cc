// libFuzzer target: the pairing inputs that come from outside — a QR code text (wa-sim's
// /pair, wactl users) and the server's <pair-success> stanza, both as raw device-identity bytes
// and as a whole decoded node; for pairing by code, the phone's primary_hello notification (on
// the companion) and the companion's companion_finish (on the phone, wa-sim). The first byte
// picks the input.
#include <cstdint>
#include <string_view>

#include "binary_node.h"
#include "pairing.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wasentinel::wa;
  static const DeviceCredentials creds = DeviceCredentials::Generate();
  if (size == 0) return 0;
  const wasentinel::ByteView rest(data + 1, size - 1);
  static const LinkCodeRequest request = CompanionHello("15551234567", creds, "Chrome (Linux)");
  static const KeyPair primary = KeyPair::Generate();
  static const PhoneLinkCode hello =
      PhonePrimaryHello(request.code,
                        request.iq.Child("link_code_companion_reg")
                            ->Child("link_code_pairing_wrapped_companion_ephemeral_pub")
                            ->ContentBytes(),
                        "ref", primary, "1")
          .value();
  switch (data[0] % 5) {
    case 0:
      (void)ParseQrCode(std::string_view(reinterpret_cast<const char*>(rest.data()), rest.size()));
      break;
    case 1: {
      Node iq = MakeNode(
          "iq", {{"id", "1"}, {"type", "set"}},
          std::vector<Node>{MakeNode(
              "pair-success", {},
              std::vector<Node>{
                  MakeNode("device-identity", {}, wasentinel::Bytes(rest.begin(), rest.end())),
                  MakeNode("device", {{"jid", "15551234567:3@s.whatsapp.net"}})})});
      (void)AnswerPairSuccess(iq, creds);
      break;
    }
    case 2: {
      auto node = DecodeNodeBody(rest);
      if (node.ok()) (void)AnswerPairSuccess(*node, creds);
      break;
    }
    case 3: {
      auto node = DecodeNodeBody(rest);
      if (node.ok()) (void)AnswerPrimaryHello(*node, request, "ref", "15551234567", creds);
      break;
    }
    case 4: {
      auto node = DecodeNodeBody(rest);
      if (node.ok()) (void)PhoneOpenCompanionFinish(*node, hello, primary);
      break;
    }
  }
  return 0;
}
