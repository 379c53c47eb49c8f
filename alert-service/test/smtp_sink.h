// tests/support/smtp-sink (aiosmtpd, a real SMTP server) as a child process of a test: started
// on loopback, stopped and started again on the same port (an SMTP outage), its messages read
// back as {mail_from, rcpt_tos, content}.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "wasentinel/testing/recorder.h"

extern char** environ;

namespace wasentinel::alert::testing {

class SmtpSink {
 public:
  /// `extra`: more smtp-sink flags ("--auth=u:p", "--reject=a@b").
  explicit SmtpSink(std::vector<std::string> extra = {}) : extra_(std::move(extra)) {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("was-smtp-", getpid(), "-", reinterpret_cast<uintptr_t>(this));
    std::filesystem::create_directories(dir_);
    Start();
  }
  ~SmtpSink() {
    Stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void Start() {
    const std::string ready = (dir_ / "ready").string();
    std::filesystem::remove(ready);
    std::vector<std::string> args = {
        "/usr/bin/python3", WAS_SMTP_SINK, "--dir",  (dir_ / "messages").string(),
        "--ready",          ready,         "--port", std::to_string(port_)};
    args.insert(args.end(), extra_.begin(), extra_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ), 0);
    ASSERT_TRUE(wasentinel::testing::Eventually([&] { return std::filesystem::exists(ready); },
                                                std::chrono::seconds(20)))
        << "smtp-sink did not start";
    std::ifstream(ready) >> port_;
  }
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = 0;
  }

  std::string url() const { return absl::StrCat("smtp://127.0.0.1:", port_); }

  std::vector<nlohmann::json> Messages() const {
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir_ / "messages", ec)) {
      if (e.path().extension() == ".json") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    std::vector<nlohmann::json> out;
    for (const auto& f : files) out.push_back(nlohmann::json::parse(std::ifstream(f)));
    return out;
  }

 private:
  std::vector<std::string> extra_;
  std::filesystem::path dir_;
  pid_t pid_ = 0;
  int port_ = 0;
};

}  // namespace wasentinel::alert::testing
