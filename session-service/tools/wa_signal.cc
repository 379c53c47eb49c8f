// wa-signal: the Signal layer (session-service/src/e2ee/signal.h) from the command line, for
// checking it against other implementations (tests/interop/signal.test.mjs drives it against
// npm libsignal and Baileys' group cipher). Reads one JSON request per line on standard input
// and answers one JSON line each; devices live in memory for the run. Bytes are base64.
//
//   {"op":"device","id":"alice","user":"15550001111","device":0,"pre_keys":5}
//       → {"registration_id","identity","signed_pre_key":{"id","pub","signature"},
//          "pre_keys":[{"id","pub"}]}          (a new device; its bundle's parts)
//   {"op":"process_bundle","id":"alice","to":{"user","device"},"bundle":{"registration_id",
//       "identity","signed_pre_key":{…},"pre_key":{"id","pub"} (optional)}}  → {}
//   {"op":"encrypt","id":"alice","to":{…},"plaintext":B64,"pad":N (optional)}
//       → {"type":"pkmsg"|"msg","ciphertext":B64}   (the plaintext is padded here)
//   {"op":"decrypt","id":"bob","from":{…},"type":"pkmsg"|"msg","ciphertext":B64}
//       → {"plaintext":B64}                          (unpadded)
//   {"op":"sender_key","id":"alice","group":"…@g.us"}  → {"distribution":B64}
//   {"op":"process_sender_key","id":"bob","group":"…","from":{…},"distribution":B64} → {}
//   {"op":"group_encrypt","id":"alice","group":"…","plaintext":B64} → {"ciphertext":B64}
//   {"op":"group_decrypt","id":"bob","group":"…","from":{…},"ciphertext":B64} → {"plaintext"}
//
// A request that fails is answered {"error":"<status code name>","message":"…"}; a line that
// is not a request, {"error":"INVALID_ARGUMENT",…}. Exit 0 at the end of input.
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "e2ee/journal_store.h"
#include "e2ee/signal.h"
#include "nlohmann/json.hpp"
#include "wasentinel/common/bytes.h"

namespace {

using nlohmann::json;
using namespace wasentinel;
using namespace wasentinel::signal;

struct Device {
  Address address;
  std::unique_ptr<MemoryStore> store;
  std::unique_ptr<Protocol> protocol;
};

struct Failure {
  absl::Status status;
};

template <class T>
T Must(absl::StatusOr<T> v) {
  if (!v.ok()) throw Failure{v.status()};
  return *std::move(v);
}
void Must(const absl::Status& st) {
  if (!st.ok()) throw Failure{st};
}

Bytes B64(const json& j, const char* field) {
  if (!j.contains(field) || !j[field].is_string()) {
    throw Failure{absl::InvalidArgumentError(std::string(field) + ": a base64 string is required")};
  }
  return Must(Base64Decode(j[field].get<std::string>()));
}

std::string Text(const json& j, const char* field) {
  if (!j.contains(field) || !j[field].is_string()) {
    throw Failure{absl::InvalidArgumentError(std::string(field) + ": a string is required")};
  }
  return j[field].get<std::string>();
}

Address AddressOf(const json& j, const char* field) {
  if (!j.contains(field) || !j[field].is_object()) {
    throw Failure{absl::InvalidArgumentError(std::string(field) + ": {user, device} required")};
  }
  const json& a = j[field];
  return {Text(a, "user"), a.value("device", 0)};
}

class Tool {
 public:
  Tool() : context_(Must(Context::Create())) {}

  json Handle(const json& req) {
    const std::string op = Text(req, "op");
    if (op == "device") return NewDevice(req);
    Device& d = DeviceOf(Text(req, "id"));
    if (op == "process_bundle") {
      Must(d.protocol->ProcessBundle(AddressOf(req, "to"), BundleOf(req.at("bundle"))));
      return json::object();
    }
    if (op == "encrypt") {
      std::optional<uint8_t> pad;
      if (req.contains("pad")) pad = req["pad"].get<int>();
      auto c = Must(d.protocol->Encrypt(AddressOf(req, "to"), Pad(B64(req, "plaintext"), pad)));
      return {{"type", MessageTypeName(c.type)}, {"ciphertext", Base64Encode(c.bytes)}};
    }
    if (op == "decrypt") {
      const std::string type = Text(req, "type");
      if (type != "pkmsg" && type != "msg") {
        throw Failure{absl::InvalidArgumentError("type is pkmsg or msg")};
      }
      auto padded = Must(d.protocol->Decrypt(
          AddressOf(req, "from"), type == "pkmsg" ? MessageType::kPreKey : MessageType::kWhisper,
          B64(req, "ciphertext")));
      return {{"plaintext", Base64Encode(Must(Unpad(padded)))}};
    }
    if (op == "sender_key") {
      return {{"distribution", Base64Encode(Must(d.protocol->SenderKeyDistribution(
                                   Text(req, "group"), d.address)))}};
    }
    if (op == "process_sender_key") {
      Must(d.protocol->ProcessSenderKeyDistribution(Text(req, "group"), AddressOf(req, "from"),
                                                    B64(req, "distribution")));
      return json::object();
    }
    if (op == "group_encrypt") {
      return {{"ciphertext", Base64Encode(Must(d.protocol->GroupEncrypt(
                                 Text(req, "group"), d.address, Pad(B64(req, "plaintext")))))}};
    }
    if (op == "group_decrypt") {
      auto padded = Must(d.protocol->GroupDecrypt(Text(req, "group"), AddressOf(req, "from"),
                                                  B64(req, "ciphertext")));
      return {{"plaintext", Base64Encode(Must(Unpad(padded)))}};
    }
    throw Failure{absl::InvalidArgumentError("unknown op " + op)};
  }

 private:
  json NewDevice(const json& req) {
    const std::string id = Text(req, "id");
    auto d = std::make_unique<Device>();
    d->address = {Text(req, "user"), req.value("device", 0)};
    const Identity identity = Must(context_->GenerateIdentity());
    d->store = std::make_unique<MemoryStore>(identity);
    d->protocol = Must(Protocol::Create(*context_, *d->store));
    const auto pre_keys =
        Must(context_->GeneratePreKeys(1, static_cast<uint32_t>(req.value("pre_keys", 5))));
    const SignedPreKey signed_key = Must(context_->GenerateSignedPreKey(identity, 1));
    Must(d->store->StoreSignedPreKey(1, Must(context_->SignedPreKeyRecord(signed_key, 0))));
    json keys = json::array();
    for (const auto& k : pre_keys) {
      Must(d->store->StorePreKey(k.id, Must(context_->PreKeyRecord(k))));
      keys.push_back({{"id", k.id}, {"pub", Base64Encode(k.key.pub)}});
    }
    devices_[id] = std::move(d);
    return {{"registration_id", identity.registration_id},
            {"identity", Base64Encode(identity.key.pub)},
            {"signed_pre_key",
             {{"id", signed_key.id},
              {"pub", Base64Encode(signed_key.key.pub)},
              {"signature", Base64Encode(signed_key.signature)}}},
            {"pre_keys", keys}};
  }

  Device& DeviceOf(const std::string& id) {
    auto it = devices_.find(id);
    if (it == devices_.end()) throw Failure{absl::NotFoundError("no device " + id)};
    return *it->second;
  }

  static PreKeyBundle BundleOf(const json& b) {
    PreKeyBundle out;
    out.registration_id = b.value("registration_id", 0u);
    out.device = b.value("device", 0);
    out.identity_pub = B64(b, "identity");
    const json& s = b.at("signed_pre_key");
    out.signed_pre_key_id = s.value("id", 0u);
    out.signed_pre_key_pub = B64(s, "pub");
    out.signed_pre_key_signature = B64(s, "signature");
    if (b.contains("pre_key") && b["pre_key"].is_object()) {
      PreKey k;
      k.id = b["pre_key"].value("id", 0u);
      k.key.pub = B64(b["pre_key"], "pub");
      out.pre_key = k;
    }
    return out;
  }

  std::unique_ptr<Context> context_;
  std::map<std::string, std::unique_ptr<Device>> devices_;
};

json Error(const absl::Status& st) {
  return {{"error", absl::StatusCodeToString(st.code())}, {"message", std::string(st.message())}};
}

}  // namespace

int main() {
  std::ios::sync_with_stdio(false);
  Tool tool;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    json answer;
    const json req = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (req.is_discarded() || !req.is_object()) {
      answer = Error(absl::InvalidArgumentError("not a JSON object"));
    } else {
      try {
        answer = tool.Handle(req);
      } catch (const Failure& f) {
        answer = Error(f.status);
      } catch (const json::exception& e) {
        answer = Error(absl::InvalidArgumentError(e.what()));
      }
    }
    std::cout << answer.dump() << '\n' << std::flush;
  }
  return 0;
}
