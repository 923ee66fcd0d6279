#include "threadpool.h"

#include <algorithm>
#include <cstdlib>

namespace qk {

ThreadPool& ThreadPool::get() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::ThreadPool() {
  int n = (int)std::thread::hardware_concurrency();
  if (const char* e = std::getenv("QATKIT_NUM_THREADS")) n = std::atoi(e);
  start(std::max(1, n));
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::start(int n) {
  nthreads_ = n;
  quit_ = false;
  // Each worker starts from the generation current now, not when it first runs: a job
  // posted before the thread is scheduled must still be seen as new.
  const uint64_t g = gen_.load();
  for (int i = 1; i < n; i++) workers_.emplace_back(&ThreadPool::worker, this, i, g);
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    quit_ = true;
    gen_++;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::resize(int n) {
  n = std::max(1, n);
  if (n == nthreads_) return;
  stop();
  start(n);
}

void ThreadPool::worker(int id, uint64_t seen) {
  for (;;) {
    // Spin a little (kernels come in bursts), then sleep.
    int spins = 0;
    while (gen_.load(std::memory_order_acquire) == seen && spins < 20000) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
      spins++;
    }
    if (gen_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return gen_.load() != seen; });
    }
    seen = gen_.load();
    if (quit_) return;
    if (per_thread_) {
      (*tfn_)(id);
    } else {
      for (;;) {
        int64_t i = next_.fetch_add(1);
        if (i >= n_) break;
        (*fn_)(i);
      }
    }
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (nthreads_ == 1 || n == 1 || busy_.exchange(true)) {
    for (int64_t i = 0; i < n; i++) fn(i);  // nested or trivial: run inline
    return;
  }
  fn_ = &fn;
  per_thread_ = false;
  n_ = n;
  next_ = 0;
  pending_ = nthreads_ - 1;
  {
    std::lock_guard<std::mutex> lk(mu_);
    gen_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  for (;;) {
    int64_t i = next_.fetch_add(1);
    if (i >= n_) break;
    fn(i);
  }
  while (pending_.load(std::memory_order_acquire) != 0) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  busy_ = false;
}

void ThreadPool::run_per_thread(const std::function<void(int)>& fn) {
  if (nthreads_ == 1 || busy_.exchange(true)) {
    for (int t = 0; t < nthreads_; t++) fn(t);
    return;
  }
  tfn_ = &fn;
  per_thread_ = true;
  pending_ = nthreads_ - 1;
  {
    std::lock_guard<std::mutex> lk(mu_);
    gen_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  fn(0);
  while (pending_.load(std::memory_order_acquire) != 0) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  busy_ = false;
}

void parallel_range(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  ThreadPool& p = ThreadPool::get();
  int64_t maxChunks = (n + grain - 1) / std::max<int64_t>(1, grain);
  int64_t chunks = std::min<int64_t>(maxChunks, p.size());
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  p.parallel_for(chunks, [&](int64_t c) {
    int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
    if (b < e) fn(b, e);
  });
}

}  // namespace qk
