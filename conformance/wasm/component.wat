;; A WASI preview 2 command component: its wasi:cli/run writes one line
;; through wasi:cli/stdout's output-stream, then returns ok.
(component
  (type $io-error-t (instance (export "error" (type (sub resource)))))
  (import "wasi:io/error@0.2.0" (instance $io-error (type $io-error-t)))
  (alias export $io-error "error" (type $error))
  (type $streams-t
    (instance
      (export "output-stream" (type (sub resource)))
      (alias outer 1 $error (type $error-outer))
      (export "error" (type $error-e (eq $error-outer)))
      (type $own-error (own $error-e))
      (type $stream-error (variant (case "last-operation-failed" $own-error) (case "closed")))
      (export "stream-error" (type $stream-error-e (eq $stream-error)))
      (type $borrow-stream (borrow 0))
      (type $bytes (list u8))
      (type $write-result (result (error $stream-error-e)))
      (type $write-t (func (param "self" $borrow-stream) (param "contents" $bytes) (result $write-result)))
      (export "[method]output-stream.blocking-write-and-flush" (func (type $write-t)))))
  (import "wasi:io/streams@0.2.0" (instance $streams (type $streams-t)))
  (alias export $streams "output-stream" (type $output-stream))
  (type $stdout-t
    (instance
      (alias outer 1 $output-stream (type $os-outer))
      (export "output-stream" (type $os-e (eq $os-outer)))
      (type $own-stream (own $os-e))
      (type $get-t (func (result $own-stream)))
      (export "get-stdout" (func (type $get-t)))))
  (import "wasi:cli/stdout@0.2.0" (instance $stdout (type $stdout-t)))

  (core module $memory-m (memory (export "memory") 1))
  (core instance $memory-i (instantiate $memory-m))
  (alias core export $memory-i "memory" (core memory $memory))
  (alias export $streams "[method]output-stream.blocking-write-and-flush" (func $write))
  (alias export $stdout "get-stdout" (func $get-stdout))
  (core func $write-lowered (canon lower (func $write) (memory $memory)))
  (core func $get-stdout-lowered (canon lower (func $get-stdout)))

  (core module $main-m
    (import "env" "memory" (memory 1))
    (import "wasi" "write" (func $write (param i32 i32 i32 i32)))
    (import "wasi" "get-stdout" (func $get-stdout (result i32)))
    (data (i32.const 16) "hello from a component\n")
    (func (export "run") (result i32)
      (call $write (call $get-stdout) (i32.const 16) (i32.const 23) (i32.const 64))
      (i32.const 0)))
  (core instance $env-i (export "memory" (memory $memory)))
  (core instance $wasi-i
    (export "write" (func $write-lowered))
    (export "get-stdout" (func $get-stdout-lowered)))
  (core instance $main-i (instantiate $main-m (with "env" (instance $env-i)) (with "wasi" (instance $wasi-i))))

  (type $run-t (func (result (result))))
  (alias core export $main-i "run" (core func $run-core))
  (func $run (type $run-t) (canon lift (core func $run-core)))
  (instance $run-i (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run-i)))
