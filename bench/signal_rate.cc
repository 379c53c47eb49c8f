// Benchmark: the Signal layer's cost per message on one core (session-service/src/e2ee/signal.h),
// in memory (the store's cost is PostgreSQL's, measured elsewhere): 1:1 whisper messages
// encrypted and decrypted, a pre-key message's first decryption (X3DH included), and sender-key
// group messages. Prints one JSON object; figures are messages per second of one thread.
//
//   bench/signal_rate [--messages=N] [--bytes=B]   (default 20000 messages of 200 bytes)
#include <chrono>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "e2ee/journal_store.h"
#include "e2ee/signal.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(int, messages, 20000, "messages per measurement");
ABSL_FLAG(int, bytes, 200, "plaintext bytes per message");

namespace {

using namespace wasentinel;
using namespace wasentinel::signal;
using Clock = std::chrono::steady_clock;

double PerSecond(int n, Clock::duration d) { return n / std::chrono::duration<double>(d).count(); }

struct Device {
  Identity identity;
  std::unique_ptr<MemoryStore> store;
  std::unique_ptr<Protocol> protocol;
  Device(Context& c) : identity(c.GenerateIdentity().value()) {
    store = std::make_unique<MemoryStore>(identity);
    protocol = Protocol::Create(c, *store).value();
  }
};

PreKeyBundle Publish(Context& c, Device& d, int32_t device, uint32_t first, uint32_t count,
                     std::vector<PreKey>* keys) {
  *keys = c.GeneratePreKeys(first, count).value();
  for (const auto& k : *keys) (void)d.store->StorePreKey(k.id, c.PreKeyRecord(k).value());
  auto s = c.GenerateSignedPreKey(d.identity, 1).value();
  (void)d.store->StoreSignedPreKey(1, c.SignedPreKeyRecord(s, 0).value());
  return {d.identity.registration_id, device, std::nullopt, s.id, s.key.pub, s.signature,
          d.identity.key.pub};
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int n = absl::GetFlag(FLAGS_messages);
  const Bytes plaintext = Pad(Bytes(absl::GetFlag(FLAGS_bytes), 'x'), 8);
  auto context = Context::Create().value();
  Device alice(*context), bob(*context);
  const Address a{"15550001111", 0}, b{"15550002222", 1};
  std::vector<PreKey> bob_keys;
  PreKeyBundle bundle = Publish(*context, bob, b.device, 1, 1, &bob_keys);
  bundle.pre_key = bob_keys.front();
  (void)alice.protocol->ProcessBundle(b, bundle);
  auto first = alice.protocol->Encrypt(b, plaintext).value();
  (void)bob.protocol->Decrypt(a, first.type, first.bytes);
  auto reply = bob.protocol->Encrypt(a, plaintext).value();
  (void)alice.protocol->Decrypt(b, reply.type, reply.bytes);

  // 1:1 whisper messages: encrypt all, then decrypt all in order.
  std::vector<Ciphertext> sent;
  sent.reserve(n);
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) sent.push_back(alice.protocol->Encrypt(b, plaintext).value());
  const auto encrypt = Clock::now() - t0;
  t0 = Clock::now();
  for (const auto& c : sent) {
    if (!bob.protocol->Decrypt(a, c.type, c.bytes).ok()) return 1;
  }
  const auto decrypt = Clock::now() - t0;

  // Pre-key messages: a fresh sender per message (X3DH on both sides), first decryption each.
  const int fresh = std::max(1, n / 20);
  std::vector<PreKey> keys;
  Device receiver(*context);
  PreKeyBundle base = Publish(*context, receiver, 1, 1, static_cast<uint32_t>(fresh), &keys);
  std::vector<std::pair<Address, Ciphertext>> pkmsgs;
  t0 = Clock::now();
  for (int i = 0; i < fresh; ++i) {
    Device sender(*context);
    PreKeyBundle bb = base;
    bb.pre_key = keys[i];
    const Address to{"15550009999", 1};
    (void)sender.protocol->ProcessBundle(to, bb);
    pkmsgs.emplace_back(Address{std::to_string(15550100000 + i), 0},
                        sender.protocol->Encrypt(to, plaintext).value());
  }
  const auto pk_encrypt = Clock::now() - t0;
  t0 = Clock::now();
  for (const auto& [from, c] : pkmsgs) {
    if (!receiver.protocol->Decrypt(from, c.type, c.bytes).ok()) return 1;
  }
  const auto pk_decrypt = Clock::now() - t0;

  // Group messages.
  const std::string group = "120363000000000001@g.us";
  (void)bob.protocol->ProcessSenderKeyDistribution(
      group, a, alice.protocol->SenderKeyDistribution(group, a).value());
  std::vector<Bytes> group_sent;
  group_sent.reserve(n);
  t0 = Clock::now();
  for (int i = 0; i < n; ++i)
    group_sent.push_back(alice.protocol->GroupEncrypt(group, a, plaintext).value());
  const auto group_encrypt = Clock::now() - t0;
  t0 = Clock::now();
  for (const auto& c : group_sent) {
    if (!bob.protocol->GroupDecrypt(group, a, c).ok()) return 1;
  }
  const auto group_decrypt = Clock::now() - t0;

  nlohmann::ordered_json out;
  out["benchmark"] = "signal_rate";
  out["messages"] = n;
  out["plaintext_bytes"] = absl::GetFlag(FLAGS_bytes);
  out["whisper_encrypt_per_second"] = static_cast<int>(PerSecond(n, encrypt));
  out["whisper_decrypt_per_second"] = static_cast<int>(PerSecond(n, decrypt));
  out["pkmsg_new_session_encrypt_per_second"] = static_cast<int>(PerSecond(fresh, pk_encrypt));
  out["pkmsg_first_decrypt_per_second"] = static_cast<int>(PerSecond(fresh, pk_decrypt));
  out["group_encrypt_per_second"] = static_cast<int>(PerSecond(n, group_encrypt));
  out["group_decrypt_per_second"] = static_cast<int>(PerSecond(n, group_decrypt));
  std::cout << out.dump() << std::endl;
  return 0;
}
