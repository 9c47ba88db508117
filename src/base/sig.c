#include "base/sig.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static int sig_write_fd = -1;

static void sig_handler(int signo)
{
    int saved = errno;
    unsigned char b = (unsigned char)signo;
    ssize_t unused = write(sig_write_fd, &b, 1);
    (void)unused;
    errno = saved;
}

int sig_pipe_install(const int *signals, int n)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    if (sig_write_fd >= 0)
        close(sig_write_fd);
    sig_write_fd = fds[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = sig_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int i = 0; i < n; i++)
        sigaction(signals[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return fds[0];
}

int sig_pipe_read(int fd)
{
    unsigned char b;
    ssize_t r = read(fd, &b, 1);
    return r == 1 ? b : 0;
}
