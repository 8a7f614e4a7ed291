; Verified: the block layer's permission rules in SMT-LIB2, written from QEMU's rules
; (shared/reference/qemu-block-semantics.md §3) independently of the C# model.
; A permission set is a 4-bit vector: bit 0 consistent-read, 1 write, 2 write-unchanged, 3 resize.
; Each child rule maps the parent's cumulative (perm p, shared s) to the child edge's perm and shared.

(define-sort Perm () (_ BitVec 4))
(define-fun NONE () Perm #x0)
(define-fun CR () Perm #x1)
(define-fun W () Perm #x2)
(define-fun WU () Perm #x4)
(define-fun RS () Perm #x8)
(define-fun ALL () Perm #xf)
(define-fun has ((a Perm) (bit Perm)) Bool (not (= (bvand a bit) NONE)))
(define-fun subset ((a Perm) (b Perm)) Bool (= (bvand a (bvnot b)) NONE))
(define-fun without ((a Perm) (b Perm)) Perm (bvand a (bvnot b)))

; Filter rule: what the parents need passes straight through.
(define-fun filter-perm ((p Perm) (s Perm)) Perm p)
(define-fun filter-shared ((p Perm) (s Perm)) Perm s)

; Backing (COW) rule: only consistent read is forwarded; write and resize are tolerated when the
; parents tolerate write.
(define-fun backing-perm ((p Perm) (s Perm)) Perm (bvand p CR))
(define-fun backing-shared ((p Perm) (s Perm)) Perm (ite (has s W) ALL (bvor CR WU)))

; DATA children: writing unchanged data may still need real writes, and writes may grow the file.
(define-fun data-up ((m Perm)) Perm
  (ite (has (ite (has m WU) (bvor m W) m) W) (bvor (ite (has m WU) (bvor m W) m) RS) (ite (has m WU) (bvor m W) m)))

; Storage rule for a format's image file (DATA and METADATA); w: the format node is writable.
(define-fun image-perm ((p Perm) (s Perm) (w Bool)) Perm (data-up (bvor p CR (ite w (bvor W RS) NONE))))
(define-fun image-shared ((p Perm) (s Perm)) Perm (without s (bvor W RS)))

; DATA-only storage rule (raw with offset or size, before raw's own correction).
(define-fun data-perm ((p Perm) (s Perm)) Perm (data-up p))
(define-fun data-shared ((p Perm) (s Perm)) Perm (without s RS))

; raw with offset/size: the data rule, keeping write and resize only where the parents ask for them.
(define-fun raw-data-perm ((p Perm) (s Perm)) Perm
  (bvor (without (data-perm p s) (bvor W RS)) (bvand p (bvor W RS))))
(define-fun raw-data-shared ((p Perm) (s Perm)) Perm (data-shared p s))

; copy-on-read: read, write and resize pass through; write-unchanged is always taken and shared.
(define-fun cor-perm ((p Perm) (s Perm)) Perm (bvor (bvand p (bvor CR W RS)) WU))
(define-fun cor-shared ((p Perm) (s Perm)) Perm (bvor (bvand s (bvor CR W RS)) WU))

; preallocate: a filter, but exclusive write+resize while its parents write and resize.
(define-fun prealloc-perm ((p Perm) (s Perm)) Perm p)
(define-fun prealloc-shared ((p Perm) (s Perm)) Perm
  (ite (and (has p W) (has p RS)) (without s (bvor W RS)) s))

; blkdebug: a filter plus take-child-perms t and unshare-child-perms u.
(define-fun blkdebug-perm ((p Perm) (s Perm) (t Perm)) Perm (bvor p t))
(define-fun blkdebug-shared ((p Perm) (s Perm) (u Perm)) Perm (without s u))

; snapshot-access reads through copy-before-write's own interface: it takes nothing on its file.
(define-fun snapacc-perm ((p Perm) (s Perm)) Perm NONE)
(define-fun snapacc-shared ((p Perm) (s Perm)) Perm ALL)

; copy-before-write's target: written, never resized.
(define-fun cbw-target-perm ((p Perm) (s Perm)) Perm W)
(define-fun cbw-target-shared ((p Perm) (s Perm)) Perm (without ALL RS))

; copy-before-write's source (file). Strict scheme (the series): always reads it and lets nobody
; else write or resize it. Upstream (7.2): only while the filter has a parent (hp), and it reads only
; when that parent writes.
(define-fun cbw-strict-perm ((p Perm) (s Perm)) Perm (bvor p CR))
(define-fun cbw-strict-shared ((p Perm) (s Perm)) Perm (without s (bvor W RS)))
(define-fun cbw-upstream-perm ((p Perm) (s Perm) (hp Bool)) Perm (ite (and hp (has p W)) (bvor p CR) p))
(define-fun cbw-upstream-shared ((p Perm) (s Perm) (hp Bool)) Perm (ite hp (without s (bvor W RS)) s))

; Root parents with fixed perms.
(define-fun device-perm ((ro Bool)) Perm (ite ro CR (bvor CR W)))
(define-fun device-shared ((sharerw Bool)) Perm (bvor CR WU RS (ite sharerw W NONE)))
(define-fun export-perm ((writable Bool)) Perm (ite writable (bvor CR W) CR))
(define-fun export-shared () Perm (bvor CR W WU))
