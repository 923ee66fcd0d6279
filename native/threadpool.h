// A small persistent thread pool: parallel_for(n, fn) runs fn(i) for i in [0, n) on the
// workers and the calling thread, tasks handed out through an atomic counter. The caller
// waits for the tasks, not for the workers, so a worker descheduled by a busy machine
// does not stall a kernel (the caller just runs its share). Workers spin briefly before
// sleeping: a training step's kernels come back to back.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace qk {

class ThreadPool {
 public:
  static ThreadPool& get();
  int size() const { return nthreads_; }
  void resize(int n);
  void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);
  // fn(t) for t in [0, size()): one task per thread's worth of work (any thread may run it).
  void run_per_thread(const std::function<void(int)>& fn);
  ~ThreadPool();

 private:
  struct Job {
    std::atomic<int64_t> next{0}, done{0};
    int64_t n = 0;
    const std::function<void(int64_t)>* fn = nullptr;
  };
  ThreadPool();
  void start(int n);
  void stop();
  void worker(uint64_t seen);
  static void work(Job& job);

  int nthreads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> gen_{0};
  std::shared_ptr<Job> job_;
  bool quit_ = false;
  std::atomic<bool> busy_{false};
};

// Splits [0, n) into a few contiguous ranges per thread, of at least `grain`: fn(begin, end).
void parallel_range(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace qk
