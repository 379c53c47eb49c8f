// creds.json documents shaped as Baileys' useMultiFileAuthState writes them (BufferJSON), for
// tests that have no Node at hand.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "crypto.h"
#include "wasentinel/common/bytes.h"

namespace wasentinel::testing {

inline nlohmann::json BufferJson(ByteView b) {
  return {{"type", "Buffer"}, {"data", Base64Encode(b)}};
}

/// A paired device's creds.json: noiseKey, me.id = PHONE:DEVICE@s.whatsapp.net, plus the other
/// fields Baileys writes.
inline std::string BaileysCredsJson(const wa::KeyPair& noise, uint64_t phone, uint32_t device,
                                    const std::string& name = "Test Account") {
  const wa::KeyPair identity = wa::KeyPair::Generate();
  nlohmann::json j = {
      {"noiseKey", {{"private", BufferJson(noise.priv)}, {"public", BufferJson(noise.pub)}}},
      {"signedIdentityKey",
       {{"private", BufferJson(identity.priv)}, {"public", BufferJson(identity.pub)}}},
      {"registrationId", 4242},
      {"advSecretKey", Base64Encode(Bytes(32, 7))},
      {"me",
       {{"id", std::to_string(phone) + ":" + std::to_string(device) + "@s.whatsapp.net"},
        {"name", name}}},
      {"platform", "android"},
      {"registered", true},
  };
  return j.dump();
}

}  // namespace wasentinel::testing
