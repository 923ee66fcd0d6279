// A small persistent thread pool: parallel_for(n, fn) runs fn(i) for i in [0, n) on all
// workers plus the calling thread. Workers spin briefly before sleeping so that the
// back-to-back kernels of a training step do not pay a futex wake-up each.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qk {

class ThreadPool {
 public:
  static ThreadPool& get();
  int size() const { return nthreads_; }
  void resize(int n);
  // Runs fn(i) for i in [0, n). Tasks are handed out dynamically (atomic counter).
  void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);
  // Runs fn(t) once per thread t in [0, size()).
  void run_per_thread(const std::function<void(int)>& fn);
  ~ThreadPool();

 private:
  ThreadPool();
  void start(int n);
  void stop();
  void worker(int id, uint64_t seen);

  int nthreads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> pending_{0};
  std::atomic<int64_t> next_{0};
  int64_t n_ = 0;
  bool per_thread_ = false;
  const std::function<void(int64_t)>* fn_ = nullptr;
  const std::function<void(int)>* tfn_ = nullptr;
  std::atomic<bool> quit_{false};
  std::atomic<bool> busy_{false};
};

// Convenience: split [0, n) into about `chunks` contiguous ranges, fn(begin, end).
void parallel_range(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace qk
