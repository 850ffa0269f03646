;; Grows its memory 1 MiB at a time and touches every page of it, without
;; bound: only a memory limit stops it. Exits 3 if the engine refuses to grow.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $page i32)
    (local $off i32)
    (loop $grow
      (local.set $page (memory.grow (i32.const 16)))
      (if (i32.eq (local.get $page) (i32.const -1))
        (then (call $proc_exit (i32.const 3))))
      (local.set $off (i32.const 0))
      (loop $touch
        (i32.store
          (i32.add (i32.mul (local.get $page) (i32.const 65536)) (local.get $off))
          (i32.const 1))
        (local.set $off (i32.add (local.get $off) (i32.const 4096)))
        (br_if $touch (i32.lt_u (local.get $off) (i32.const 1048576))))
      (br $grow))))
