// libFuzzer target: what the network hands the Signal layer (session-service/src/e2ee/signal.h)
// — a pkmsg or msg from a peer this device has a session with, an skmsg of a group whose sender
// key it holds, a sender key distribution, the padding of a decrypted plaintext — and the key
// stanzas (session-service/src/e2ee/prekey_stanzas.h) as frames: a bundle answer, a pre-key
// upload and a bundle request (wa-sim reads the last two), a usync device list
// (session-service/src/wa/usync.h), a retry receipt's keys — and the Message protobuf of a
// decrypted plaintext (session-service/src/e2ee/message_content.h). The first byte picks the
// input; none may crash, whatever it is.
#include <cstdint>
#include <memory>

#include "binary_node.h"
#include "e2ee/journal_store.h"
#include "e2ee/message_content.h"
#include "e2ee/prekey_stanzas.h"
#include "e2ee/signal.h"
#include "usync.h"

namespace {

using namespace wasentinel;
using namespace wasentinel::signal;

struct World {
  std::unique_ptr<Context> context = Context::Create().value();
  Address alice{"15550001111", 0}, bob{"15550002222", 1};
  Identity bob_identity = context->GenerateIdentity().value();
  MemoryStore alice_store{context->GenerateIdentity().value()};
  MemoryStore bob_store{bob_identity};
  std::unique_ptr<Protocol> a = Protocol::Create(*context, alice_store).value();
  std::unique_ptr<Protocol> b = Protocol::Create(*context, bob_store).value();
  const std::string group = "120363000000000001@g.us";

  World() {
    // Bob publishes a bundle; Alice starts a session and a sender key Bob takes.
    auto pre = context->GeneratePreKeys(1, 1).value().front();
    (void)bob_store.StorePreKey(pre.id, context->PreKeyRecord(pre).value());
    auto signed_key = context->GenerateSignedPreKey(bob_identity, 1).value();
    (void)bob_store.StoreSignedPreKey(1, context->SignedPreKeyRecord(signed_key, 0).value());
    PreKeyBundle bundle{
        bob_identity.registration_id, bob.device,          pre, signed_key.id, signed_key.key.pub,
        signed_key.signature,         bob_identity.key.pub};
    (void)a->ProcessBundle(bob, bundle);
    auto first = a->Encrypt(bob, Pad(ByteView())).value();
    (void)b->Decrypt(alice, first.type, first.bytes);
    (void)b->ProcessSenderKeyDistribution(group, alice,
                                          a->SenderKeyDistribution(group, alice).value());
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World w;
  if (size == 0) return 0;
  const ByteView rest(data + 1, size - 1);
  switch (data[0] % 8) {
    case 0:
      (void)w.b->Decrypt(w.alice, MessageType::kPreKey, rest);
      break;
    case 1:
      (void)w.b->Decrypt(w.alice, MessageType::kWhisper, rest);
      break;
    case 2:
      (void)w.b->GroupDecrypt(w.group, w.alice, rest);
      break;
    case 3:
      (void)w.b->ProcessSenderKeyDistribution(w.group, w.bob, rest);
      break;
    case 4:
      (void)Unpad(rest);
      break;
    case 5:
      // A bundle answer, as the connection hands it over.
      // The same frame read as the other answers and stanzas of sending: a device list
      // (usync), a retry receipt's keys.
      if (auto node = wa::DecodeNode(rest); node.ok()) {
        (void)ParseBundleResultIq(*node);
        (void)wa::ParseDeviceLists(*node);
        (void)ParseRetryReceiptKeys(*node, 3);
      }
      break;
    case 6:
      // A pre-key upload and a bundle request (wa-sim reads them).
      if (auto node = wa::DecodeNode(rest); node.ok()) {
        (void)ParsePreKeyUploadIq(*node);
        (void)ParseBundleRequestIq(*node);
      }
      break;
    case 7:
      // A decrypted plaintext's Message protobuf.
      (void)ParseMessageContent(rest);
      break;
  }
  return 0;
}
