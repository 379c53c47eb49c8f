// wa-node: decode WhatsApp Web binary node bytes to XML-like text or JSON, and encode JSON back.
//
//   wa-node decode [--raw] [--no-flag] [--json] [FILE]   hex (default) or raw bytes → node
//   wa-node encode [--raw] [FILE]                        JSON node → hex (or raw bytes)
//   wa-node decode --lines / encode --lines             one hex / JSON document per line in,
//                                                        one JSON / hex line out ("error: ..."
//                                                        for a line that fails)
//
// Input comes from FILE or standard input. Decoding accepts the frame plaintext with its flag
// byte (zlib-compressed bodies are inflated) or, with --no-flag, a bare node body.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "binary_node.h"
#include "node_json.h"

namespace {

int Usage() {
  std::cerr << "usage:\n"
               "  wa-node decode [--raw] [--no-flag] [--json] [FILE]\n"
               "  wa-node encode [--raw] [FILE]\n"
               "  wa-node decode|encode --lines [FILE]\n";
  return 2;
}

bool ReadAll(const std::string& path, std::string& out) {
  if (path.empty() || path == "-") {
    out.assign(std::istreambuf_iterator<char>(std::cin), {});
    return true;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  out.assign(std::istreambuf_iterator<char>(f), {});
  return true;
}

std::string DecodeLine(std::string_view line, bool no_flag) {
  using namespace wasentinel;
  auto bytes = HexDecode(line);
  if (!bytes.ok()) return "error: " + std::string(bytes.status().message());
  auto node = no_flag ? wa::DecodeNodeBody(*bytes) : wa::DecodeNode(*bytes);
  if (!node.ok()) return "error: " + std::string(node.status().message());
  return wa::NodeToJson(*node).dump(-1, ' ', false,
                                    nlohmann::ordered_json::error_handler_t::replace);
}

std::string EncodeLine(std::string_view line) {
  using namespace wasentinel;
  auto parsed = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return "error: not JSON";
  auto node = wa::NodeFromJson(parsed);
  if (!node.ok()) return "error: " + std::string(node.status().message());
  auto bytes = wa::EncodeNode(*node);
  if (!bytes.ok()) return "error: " + std::string(bytes.status().message());
  return HexEncode(*bytes);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace wasentinel;
  if (argc < 2) return Usage();
  const std::string cmd = argv[1];
  bool raw = false, no_flag = false, json = false, lines = false;
  std::string path;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--raw")
      raw = true;
    else if (a == "--no-flag")
      no_flag = true;
    else if (a == "--json")
      json = true;
    else if (a == "--lines")
      lines = true;
    else if (a.starts_with("--"))
      return Usage();
    else
      path = a;
  }
  std::string input;
  if (!ReadAll(path, input)) {
    std::cerr << "wa-node: cannot read " << path << "\n";
    return 1;
  }
  if (lines && (cmd == "decode" || cmd == "encode")) {
    size_t start = 0;
    while (start < input.size()) {
      size_t end = input.find('\n', start);
      if (end == std::string::npos) end = input.size();
      std::string_view line(input.data() + start, end - start);
      if (!line.empty()) {
        std::cout << (cmd == "decode" ? DecodeLine(line, no_flag) : EncodeLine(line)) << "\n";
      }
      start = end + 1;
    }
    return 0;
  }
  if (cmd == "decode") {
    Bytes bytes;
    if (raw) {
      bytes = ToBytes(input);
    } else {
      auto hex = HexDecode(input);
      if (!hex.ok()) {
        std::cerr << "wa-node: " << hex.status().message() << "\n";
        return 1;
      }
      bytes = *std::move(hex);
    }
    auto node = no_flag ? wa::DecodeNodeBody(bytes) : wa::DecodeNode(bytes);
    if (!node.ok()) {
      std::cerr << "wa-node: " << node.status().message() << "\n";
      return 1;
    }
    if (json) {
      std::cout << wa::NodeToJson(*node).dump(2, ' ', false,
                                              nlohmann::ordered_json::error_handler_t::replace)
                << "\n";
    } else {
      std::cout << wa::NodeToXml(*node, /*max_bytes=*/0);
    }
    return 0;
  }
  if (cmd == "encode") {
    auto parsed = nlohmann::ordered_json::parse(input, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      std::cerr << "wa-node: input is not JSON\n";
      return 1;
    }
    auto node = wa::NodeFromJson(parsed);
    if (!node.ok()) {
      std::cerr << "wa-node: " << node.status().message() << "\n";
      return 1;
    }
    auto bytes = wa::EncodeNode(*node);
    if (!bytes.ok()) {
      std::cerr << "wa-node: " << bytes.status().message() << "\n";
      return 1;
    }
    if (raw) {
      std::fwrite(bytes->data(), 1, bytes->size(), stdout);
    } else {
      std::cout << HexEncode(*bytes) << "\n";
    }
    return 0;
  }
  return Usage();
}
