// Runs a program on a kernel that refuses io_uring, as kernel.io_uring_disabled or a container's
// seccomp profile does: a seccomp filter makes one io_uring system call fail with the errno given,
// then the program is exec'd (the filter stays for it and its threads).
//
//   without_io_uring setup|register ERRNO PROGRAM [ARGS...]
//
// `setup`: io_uring_setup fails (no ring at all); `register`: io_uring_register fails (a ring, but
// no probe and no provided buffers: a kernel missing what evloop needs). ERRNO is EPERM, ENOSYS or
// EINVAL. libc and the kernel's headers only. Exit 2 on bad usage, 77 where the filter cannot be
// built (an architecture this file does not know), 1 when the filter or the exec fails.
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace {

#if defined(__x86_64__)
constexpr unsigned kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned kArch = AUDIT_ARCH_AARCH64;
#else
constexpr unsigned kArch = 0;
#endif

int usage() {
  std::fprintf(stderr,
               "usage: without_io_uring setup|register EPERM|ENOSYS|EINVAL PROGRAM [ARGS...]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage();
  const std::string_view call = argv[1], name = argv[2];
  long nr = 0;
  if (call == "setup") {
    nr = __NR_io_uring_setup;
  } else if (call == "register") {
    nr = __NR_io_uring_register;
  } else {
    return usage();
  }
  unsigned err = 0;
  if (name == "EPERM") {
    err = EPERM;
  } else if (name == "ENOSYS") {
    err = ENOSYS;
  } else if (name == "EINVAL") {
    err = EINVAL;
  } else {
    return usage();
  }
  if (kArch == 0) {
    std::fprintf(stderr, "without_io_uring: unknown architecture\n");
    return 77;
  }
  sock_filter filter[] = {
      // Another architecture's system call numbers mean other calls: let them be.
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<unsigned>(nr), 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  // No new privileges: what lets an unprivileged process install a filter.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    std::fprintf(stderr, "without_io_uring: seccomp: %s\n", std::strerror(errno));
    return 1;
  }
  execvp(argv[3], argv + 3);
  std::fprintf(stderr, "without_io_uring: exec %s: %s\n", argv[3], std::strerror(errno));
  return 1;
}
