//! One object, end to end: open its source, run the transform (buffered or
//! streaming), and either hand the result back or deliver it to the next hop with
//! retries. Transport-neutral: HTTP and WebSocket both come through here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::DropGuard;

use crate::held::{Held, HeldError, HeldOutput};
use crate::pipeline::{Pipeline, PutUrlError};
use crate::runtime::{InputStream, ObjectError, ObjectRequest, Transform, Turn};
use crate::sink::{Answer, DirectPut, PutError};
use crate::source::{HeldInput, Loaded, Opened, Source, SourceError};

/// Output chunks in flight between a streaming guest and its receiver: the bound
/// that makes streaming constant-memory.
const OUTPUT_QUEUE: usize = 4;

/// The same, for output held whole, gathered in the guest's task: the guest waits
/// for its chunks to be gathered every this many writes (or at an epoch tick), a
/// yield and a poll of its task each time, and may write this many past the limit
/// before it is stopped. 16 (4 MiB of 256 KiB chunks) gave 1.08x the MiB per CPU
/// second of 4 with 16 MiB objects, as much as 80.
const GATHER_QUEUE: usize = 16;

/// Everything the server needs per process to process objects.
#[derive(Clone)]
pub struct Etl {
    pub transform: Transform,
    pub direct_put: DirectPut,
    /// The path of `AIS_TARGET_URL` (per-ETL endpoint and secret), for target hops.
    pub target_path: Option<String>,
    /// `ETL_DIRECT_FQN`: stream FQN files to a streaming export whatever their size.
    pub direct_fqn: bool,
    /// Where guests run once they take longer than an epoch tick, or at once when
    /// their calls have lately been long: a runtime of their own, apart from the
    /// one serving the protocol, so that busy guests never delay accepting
    /// connections or answering `/health` (§8.4).
    pub guests: tokio::runtime::Handle,
    /// `--held-input`: what objects read whole over a connection may hold while they
    /// wait for their turn.
    pub held_input: HeldInput,
    /// How long this transform's buffered calls have lately taken.
    pub pace: Pace,
    /// How long this transform's streaming calls have lately held their thread at
    /// once (`Measure::Holding`).
    pub stream_pace: Pace,
}

/// One object to process.
pub struct Job {
    pub object: ObjectRequest,
    pub source: Source,
    pub pipeline: Option<Pipeline>,
    /// The object path as it goes into a stage hop's URL (escaped, leading `/`).
    pub forward_path: String,
    /// Bytes of input, when known before reading; set while processing (metrics).
    pub bytes_in: u64,
}

/// What became of an object.
pub enum Outcome {
    /// The transformed object, for the caller.
    Output(Output),
    /// Delivered by direct put; `length` is reported onward.
    Delivered { length: u64 },
    /// The next hop answered 200 with a body, which goes back to the caller.
    Returned {
        first: Bytes,
        rest: BoxStream<'static, Result<Bytes, EtlError>>,
    },
}

/// A transformed object.
pub enum Output {
    /// A buffered result.
    Full(Bytes),
    /// A streaming transform, ready to run: the caller reads its output as it comes
    /// ([`StreamCall::start`]) or has it held whole ([`StreamCall::gather`]).
    Stream(StreamCall),
}

/// Why an object failed. Mapped to a status in one place, `protocol::error`.
#[derive(Debug, thiserror::Error)]
pub enum EtlError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Transform(#[from] ObjectError),
    #[error(transparent)]
    PutUrl(#[from] PutUrlError),
    #[error(transparent)]
    DirectPut(PutError),
    /// A transient direct-put failure whose input was a one-shot request body: the
    /// caller may replay the request (the 503 contract, §7.3).
    #[error("the direct put failed and the request body cannot be replayed: {0}")]
    DirectPutOneShot(PutError),
    /// Retries ran out.
    #[error("the direct put failed after {attempts} attempts: {last}")]
    DirectPutExhausted { attempts: u32, last: PutError },
    /// I/O outside the guest (opening the source, the next hop's answer) outlasted
    /// the per-object deadline; the guest's own time is bounded by the runtime.
    #[error(
        "{during} did not finish within the per-object deadline of {limit:?}; if objects need \
         longer, raise ETL_WASM_TIMEOUT (--timeout; `ais-wasm spec` makes it two \
         thirds of the ETL's obj_timeout)"
    )]
    Timeout {
        during: &'static str,
        limit: Duration,
    },
    /// A result held whole (a WebSocket reply) outgrew its memory or disk, or its file
    /// failed.
    #[error(transparent)]
    Held(#[from] HeldError),
}

impl Etl {
    pub async fn process(&self, job: &mut Job) -> Result<Outcome, EtlError> {
        let deadline = self.deadline(job);
        let Some(pipeline) = job.pipeline.take() else {
            return Ok(Outcome::Output(self.run(job).await?));
        };
        let url = pipeline.next.put_url(
            self.target_path.as_deref(),
            &job.forward_path,
            &job.object.args,
        )?;
        let to_target = pipeline.next.is_target();
        let rest = pipeline.rest.as_deref();
        let mut attempt = 0;
        let mut output = Some(self.run(job).await?);
        loop {
            // A streamed result is consumed by an attempt: a retry runs the transform
            // again from a freshly opened source.
            let current = match output.take() {
                Some(output) => output,
                None => self.run(job).await?,
            };
            let (body, length, transformed, retained) = match current {
                Output::Full(bytes) => {
                    let length = bytes.len() as u64;
                    (
                        reqwest::Body::from(bytes.clone()),
                        Some(length),
                        None,
                        Some(bytes),
                    )
                }
                Output::Stream(call) => {
                    let mut stream = call.start();
                    let done = stream.take_handle();
                    (reqwest::Body::wrap_stream(stream), None, Some(done), None)
                }
            };
            let put = self.direct_put.put(&url, rest, body, length, to_target);
            let answer = match self
                .in_time(deadline, "the direct put to the next hop", put)
                .await
            {
                Ok(answer) => answer,
                Err(timeout) => return Err(cause_of(timeout, transformed).await),
            };
            let delivered = match answer {
                // A streaming next hop answers while it still reads our upload, and
                // stops reading when its answer is not read: its answer goes back as
                // it comes, and the transform's end is awaited after its last byte
                // (awaited first, both would stall until the deadline).
                Ok(Answer::Returned { first, rest }) => {
                    let rest = paced(rest, self.transform.limits().timeout);
                    let rest = match transformed {
                        Some(done) => rest.chain(failure_of(done)).boxed(),
                        None => rest,
                    };
                    return Ok(Outcome::Returned { first, rest });
                }
                Ok(Answer::Delivered { length }) => Ok(length),
                Err(error) => Err(error),
            };
            // A failed transform breaks the upload too: report the transform's error.
            // The reverse also happens: a refused or reset upload drops the output
            // under a streaming transform, which then fails writing, or is stopped at
            // its next epoch tick as abandoned (`OutputStream`). The upload's
            // failure is the cause, and decides between 502, a local retry and the
            // 503 contract (§7.3, §7.4); reporting the write failure would make it a
            // 500 that nobody retries.
            let sent = match transformed {
                Some(done) => match join(done).await {
                    Ok(sent) => Some(sent),
                    Err(error) if delivered.is_err() && upload_dropped(&error) => None,
                    Err(error) => return Err(error),
                },
                None => length,
            };
            let error = match delivered {
                Ok(length) => {
                    let length = if to_target {
                        sent.unwrap_or(length)
                    } else {
                        length
                    };
                    return Ok(Outcome::Delivered { length });
                }
                Err(error @ (PutError::Status { .. } | PutError::Unexpected(_))) => {
                    return Err(EtlError::DirectPut(error));
                }
                Err(error @ PutError::Transient(_)) => error,
            };
            if retained.is_none() && !job.source.replayable() {
                return Err(EtlError::DirectPutOneShot(error));
            }
            let delay = self.direct_put.delay(attempt);
            // Retries end with the attempts, or with the object's time.
            if attempt >= self.direct_put.retries || Instant::now() + delay >= deadline {
                return Err(EtlError::DirectPutExhausted {
                    attempts: attempt + 1,
                    last: error,
                });
            }
            tracing::warn!(
                parent: job.object.span(),
                object = %job.object.path,
                attempt,
                ?delay,
                "retrying the direct put: {error}"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
            output = retained.map(Output::Full);
        }
    }

    /// Run the transform once on a freshly opened source.
    async fn run(&self, job: &mut Job) -> Result<Output, EtlError> {
        let shapes = self.transform.shapes();
        let direct_fqn =
            self.direct_fqn && shapes.streaming && matches!(job.source, Source::Fqn { .. });
        let whole = move |size| !direct_fqn && !shapes.prefers_streaming(size);
        let arrives = job.source.arrives();
        // A buffered transform takes the object into its instance's memory.
        let at_most = self.transform.limits().max_memory;
        let deadline = self.deadline(job);
        // A file is read in its object's turn, not ahead of it: from the page cache
        // that takes less than waiting twice would, and files read whole would
        // otherwise all wait for their turn in memory (a WebSocket connection alone
        // has 256 requests in flight). A source that arrives is read first, since
        // reading it may take long.
        let turn = match job.source {
            Source::Fqn { .. } => {
                let turn = self.in_time(deadline, "waiting for a worker", self.transform.turn());
                Some(turn.await?)
            }
            _ => None,
        };
        let reading = match arrives {
            true => "reading the object, or waiting for room in ETL_WASM_HELD_INPUT to hold it,",
            false => "reading the object",
        };
        let load = job.source.load(whole, at_most, &self.held_input);
        let loaded = self.in_time(deadline, reading, load).await??;
        let transform = self.transform.clone();
        // A token of its own, cancelled with the job's (a WebSocket connection gone)
        // or alone: a retry must not inherit the abandonment of the attempt before it.
        let object = ObjectRequest {
            abandoned: job.object.abandoned.child_token(),
            ..job.object.clone()
        };
        match loaded {
            Loaded::Whole(data, share) => {
                job.bytes_in = data.len() as u64;
                // Wait for a turn here: waiting inside the call would count as a
                // yield and move it to the guests' runtime.
                let turn = match turn {
                    Some(turn) => turn,
                    None => {
                        let turn = transform.turn();
                        self.in_time(deadline, "waiting for a worker", turn).await?
                    }
                };
                // Dropped before the call ends (the client went away), this stops
                // the guest at its next epoch tick rather than at its deadline.
                let abandon_if_dropped = object.abandoned.clone().drop_guard();
                let call = async move {
                    let _held_until_done = share;
                    transform.buffered_in(turn, &data, &object).await
                };
                let output = self.on_guests(call).await;
                abandon_if_dropped.disarm();
                Ok(Output::Full(output?.into()))
            }
            Loaded::Stream(opened) => {
                job.bytes_in = opened.size.unwrap_or(0);
                // A source that arrives over a connection is polled on this thread:
                // running the guest here too saves two wake-ups per chunk (1 MiB
                // with direct put, concurrency 1: 1.1-1.4x the objects/s; hpush
                // bodies of 1-16 MiB: 1.1-1.2x), unless its polls are long enough to
                // hold up the connections that share this thread. A file or memory
                // never waits, and its guest is better on the guests' runtime, on
                // every core (FQN, 1 MiB, concurrency 8: 1.1-1.2x there). So is one
                // whose object waits for a worker: guests held on the threads of the
                // connections that got turns leave cores idle (md5, 1 MiB, hpush,
                // concurrency 32: 1.05 cores busy, 0.66x the objects/s).
                let here = arrives && !self.stream_pace.is_long();
                let turn = match turn {
                    None if here => transform.turn_now(),
                    turn => turn,
                };
                let runtime = match here && turn.is_some() {
                    true => tokio::runtime::Handle::current(),
                    false => self.guests.clone(),
                };
                Ok(Output::Stream(StreamCall {
                    transform,
                    turn,
                    input: opened,
                    object,
                    runtime,
                    pace: self.stream_pace.clone(),
                }))
            }
        }
    }
}

impl Etl {
    /// When the object's time is up: `--timeout` from its first step here, one
    /// budget for all it takes (reading, waiting for a worker, the guest, the direct
    /// put and its retries), as the target's own timeout for it is one.
    fn deadline(&self, job: &mut Job) -> Instant {
        let limit = self.transform.limits().timeout;
        *job.object
            .deadline
            .get_or_insert_with(|| Instant::now() + limit)
    }

    /// Bound host I/O by the object's deadline: without it, a next hop or target
    /// that accepts a connection and never answers would hold the request forever.
    async fn in_time<T>(
        &self,
        deadline: Instant,
        during: &'static str,
        io: impl Future<Output = T>,
    ) -> Result<T, EtlError> {
        let limit = self.transform.limits().timeout;
        tokio::time::timeout_at(deadline.into(), io)
            .await
            .map_err(|_| EtlError::Timeout { during, limit })
    }
}

/// The rest of a next hop's answer, each chunk due within `limit` of the one before:
/// a hop that stops sending would otherwise hold the reply for ever (on a WebSocket,
/// with every reply queued behind it).
fn paced(
    rest: BoxStream<'static, Result<Bytes, PutError>>,
    limit: Duration,
) -> BoxStream<'static, Result<Bytes, EtlError>> {
    futures::stream::unfold(Some(rest), move |rest| async move {
        let mut rest = rest?;
        match tokio::time::timeout(limit, rest.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(rest))),
            Ok(None) => None,
            Ok(Some(Err(error))) => Some((Err(EtlError::DirectPut(error)), None)),
            Err(_) => {
                let during = "the next hop's answer";
                Some((Err(EtlError::Timeout { during, limit }), None))
            }
        }
    })
    .boxed()
}

impl Etl {
    /// Run a buffered guest call here until it first gives its thread back (an epoch
    /// tick, at most 10 ms in), then move it to the guests' runtime to finish. Most
    /// calls end before that, and save the two cross-thread wake-ups of a hand-off.
    /// The move happens within the poll that saw it yield, so a dropped connection
    /// can't cancel the call between the two (which would cost the instance).
    ///
    /// A transform whose calls lately took over 0.5 ms ([`Pace::calls`]) goes to the
    /// guests' runtime at once: its calls then run on every core, where inline they
    /// would queue behind each other on their connection's thread (one WebSocket
    /// connection carries many objects at once), and the hand-off costs them little.
    async fn on_guests<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, ObjectError>> + Send + 'static,
    ) -> Result<T, EtlError> {
        let mut call = Timed::new(call, self.pace.clone(), Measure::Total(Duration::ZERO));
        if self.pace.is_long() {
            return join(self.guests.spawn(call)).await;
        }
        let first = std::future::poll_fn(|cx| match Pin::new(&mut call).poll(cx) {
            Poll::Ready(result) => Poll::Ready(Some(result)),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        match first {
            Some(result) => Ok(result?),
            None => join(self.guests.spawn(call)).await,
        }
    }
}

/// A moving average of how long a transform's calls keep a thread (their polls, not
/// the waits between), shared by the requests of one loaded transform, and the time
/// past which it is long.
#[derive(Clone)]
pub struct Pace {
    average: Arc<AtomicU64>,
    long: Duration,
}

impl Pace {
    /// For buffered calls, timed whole: long past the call time at which a hand-off's
    /// cost (two cross-thread wake-ups, some 10-20 µs of CPU) is under a few percent.
    pub fn calls() -> Pace {
        Pace::long_past(Duration::from_micros(500))
    }

    /// For streaming calls, by how long they hold their thread at once. Fed over a
    /// connection on its own thread, a guest is polled for what the connection has
    /// read: one chunk of hyper's (at most some 400 KiB) or a WebSocket batch, at
    /// most 1 MiB. Long past 2 ms, so that MD5 (some 0.3-1.3 ms a poll) and hashes
    /// as fast stay on the connection's thread: on the guests' runtime every object
    /// costs a hand-off and every chunk two wake-ups (md5, 1 MiB, hpush and hpull,
    /// concurrency 1 and 8: 1.03-1.16x the objects/s on the connection's thread, for
    /// 6-15% less CPU per object).
    pub fn polls() -> Pace {
        Pace::long_past(Duration::from_millis(2))
    }

    fn long_past(long: Duration) -> Pace {
        Pace {
            average: Arc::default(),
            long,
        }
    }

    fn is_long(&self) -> bool {
        self.average.load(Ordering::Relaxed) > self.long.as_nanos() as u64
    }

    /// Weighs in one call at 1/8: races between concurrent calls lose a sample at
    /// worst.
    fn record(&self, busy: Duration) {
        let sample = u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
        let average = self.average.load(Ordering::Relaxed);
        let average = average - average / 8 + sample / 8;
        self.average.store(average, Ordering::Relaxed);
    }
}

/// What a guest call reports to its [`Pace`] when done.
enum Measure {
    /// The time of all its polls: how long it kept a thread busy in all.
    Total(Duration),
    /// How long it holds its thread at once, as most of its busy time sees it: the
    /// mean of its polls on the side of its pace's threshold where most of that time
    /// went.
    /// Not its longest poll: on a shared machine the kernel now and then preempts
    /// one of a streaming call's hundred-odd polls for 0.3-2.6 ms, and that one
    /// would send the transform to the guests' runtime.
    Holding { short: Polls, long: Polls },
}

/// Some polls of a call, and the time they took.
#[derive(Default)]
struct Polls {
    count: u32,
    time: Duration,
}

impl Polls {
    fn add(&mut self, took: Duration) {
        self.count += 1;
        self.time += took;
    }

    fn mean(&self) -> Duration {
        self.time / self.count.max(1)
    }
}

impl Measure {
    fn holding() -> Self {
        Measure::Holding {
            short: Polls::default(),
            long: Polls::default(),
        }
    }

    /// Adds a poll that `took` this long, to a pace whose threshold is `long_past`.
    fn add(&mut self, took: Duration, long_past: Duration) {
        match self {
            Measure::Total(total) => *total += took,
            Measure::Holding { long, .. } if took > long_past => long.add(took),
            Measure::Holding { short, .. } => short.add(took),
        }
    }

    fn sample(&self) -> Duration {
        match self {
            Measure::Total(total) => *total,
            Measure::Holding { short, long } if long.time > short.time => long.mean(),
            Measure::Holding { short, .. } => short.mean(),
        }
    }
}

/// A guest call that times its polls, and reports them when done.
struct Timed<F> {
    call: Pin<Box<F>>,
    measure: Measure,
    pace: Pace,
}

impl<F> Timed<F> {
    fn new(call: F, pace: Pace, measure: Measure) -> Self {
        Timed {
            call: Box::pin(call),
            measure,
            pace,
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let started = Instant::now();
        let polled = self.call.as_mut().poll(cx);
        let long = self.pace.long;
        self.measure.add(started.elapsed(), long);
        if polled.is_ready() {
            self.pace.record(self.measure.sample());
        }
        polled
    }
}

async fn join<T>(handle: JoinHandle<Result<T, ObjectError>>) -> Result<T, EtlError> {
    Ok(handle.await.map_err(abnormal)??)
}

/// What ran out of time, when the direct put of a transform's output did: a
/// streaming transform past its own deadline (which the runtime ends within a
/// tick) holds the upload up, and is the cause then; its failure to write into
/// the upload just dropped is not.
async fn cause_of(
    timeout: EtlError,
    transformed: Option<JoinHandle<Result<u64, ObjectError>>>,
) -> EtlError {
    match transformed {
        Some(done) => match join(done).await {
            Err(error) if !upload_dropped(&error) => error,
            _ => timeout,
        },
        None => timeout,
    }
}

/// Whether a streaming transform failed because the upload of its output was
/// dropped: at its next write, or at its next epoch tick (`OutputStream`).
fn upload_dropped(error: &EtlError) -> bool {
    matches!(
        error,
        EtlError::Transform(ObjectError::Output(_) | ObjectError::Abandoned)
    )
}

/// Nothing when the transform behind `handle` succeeds, else its error: the end of a
/// stream whose bytes depended on it.
fn failure_of<T: Send + 'static>(
    handle: JoinHandle<Result<T, ObjectError>>,
) -> impl Stream<Item = Result<Bytes, EtlError>> {
    futures::stream::once(join(handle)).filter_map(|ended| async move { ended.err().map(Err) })
}

fn abnormal(error: JoinError) -> EtlError {
    EtlError::Transform(ObjectError::Instance(anyhow::anyhow!(
        "the transform task ended abnormally: {error}"
    )))
}

/// A streaming transform not yet started. Either way it starts, the guest runs in a
/// task of its own, so that a dropped connection never cancels it mid-call (which
/// would cost the instance).
pub struct StreamCall {
    transform: Transform,
    /// Taken already (for a file), else waited for when the call starts.
    turn: Option<Turn>,
    input: Opened,
    object: ObjectRequest,
    /// Where the guest runs.
    runtime: tokio::runtime::Handle,
    pace: Pace,
}

impl StreamCall {
    /// Run the transform, its output read as it is produced.
    pub fn start(self) -> OutputStream {
        let (sender, receiver) = mpsc::channel(OUTPUT_QUEUE);
        let (finished, outcome) = oneshot::channel();
        let runtime = self.runtime.clone();
        let abandoned = self.object.abandoned.clone();
        OutputStream {
            receiver,
            outcome: Some(outcome),
            handle: Some(runtime.spawn(self.call(sender, Some(finished)))),
            _abandon_if_dropped: abandoned.drop_guard(),
        }
    }

    /// Run the transform and hold its output whole in `held` (a WebSocket reply,
    /// which cannot be begun before the transform has succeeded).
    /// The output is gathered in the guest's own task: handing each chunk to the
    /// caller's thread instead cost a wake-up per chunk, and 10-15% more CPU per
    /// object (WebSocket by FQN, 16 MiB, concurrency 1).
    pub async fn gather(self, mut held: Held) -> Result<HeldOutput, EtlError> {
        let (sender, mut receiver) = mpsc::channel(GATHER_QUEUE);
        let runtime = self.runtime.clone();
        let call = self.call(sender, None);
        // Owns the receiver, so that outgrowing its room drops it and stops the
        // guest at its next write: a streaming guest's output has no end of its own.
        let gather = async move {
            while let Some(chunk) = receiver.recv().await {
                held.push(chunk).await?;
            }
            held.finish().await
        };
        let task = runtime.spawn(async move { tokio::join!(call, gather) });
        let (called, gathered) = task.await.map_err(abnormal)?;
        // Outgrowing its room is the cause of the guest's failed write.
        let held = gathered?;
        called?;
        Ok(held)
    }

    /// The guest's call, writing into `output`; `finished` learns whether it
    /// succeeded.
    fn call(
        self,
        output: mpsc::Sender<Bytes>,
        finished: Option<oneshot::Sender<bool>>,
    ) -> impl Future<Output = Result<u64, ObjectError>> + Send + 'static {
        let StreamCall {
            transform,
            turn,
            input,
            object,
            pace,
            ..
        } = self;
        let call = async move {
            let input = InputStream::new(input.reader, input.size);
            let turn = match turn {
                Some(turn) => turn,
                None => transform.turn().await,
            };
            let result = transform.streaming_in(turn, input, output, &object).await;
            // An abandoned call was logged by the runtime, if it had begun.
            if let Err(error) = &result
                && !matches!(error, ObjectError::Abandoned)
            {
                tracing::warn!(
                    parent: object.span(),
                    object = %object.path,
                    "streaming transform failed: {error}"
                );
            }
            if let Some(finished) = finished {
                let _ = finished.send(result.is_ok());
            }
            result
        };
        Timed::new(call, pace, Measure::holding())
    }
}

/// The output of a streaming transform as a stream of chunks. It ends cleanly only
/// when the transform succeeded; otherwise its last item is an error, so an HTTP
/// body is aborted rather than ended (a truncated object must never look complete).
pub struct OutputStream {
    receiver: mpsc::Receiver<Bytes>,
    outcome: Option<oneshot::Receiver<bool>>,
    handle: Option<JoinHandle<Result<u64, ObjectError>>>,
    /// Read no further (the client went away, an upload failed), the stream stops
    /// its guest at the guest's next epoch tick, where its next write would have
    /// failed; once the transform has ended, this changes nothing.
    _abandon_if_dropped: DropGuard,
}

impl OutputStream {
    /// The transform's task, to learn its result once the stream has been read.
    pub fn take_handle(&mut self) -> JoinHandle<Result<u64, ObjectError>> {
        self.handle.take().expect("the handle is taken once")
    }

    /// Wait for the first chunk, so the caller can still answer with an error
    /// status when the transform fails before producing anything. `Ok(None)`: the
    /// transform succeeded with empty output.
    pub async fn first(&mut self) -> Result<Option<Bytes>, EtlError> {
        if let Some(chunk) = self.receiver.recv().await {
            return Ok(Some(chunk));
        }
        self.outcome = None;
        join(self.take_handle()).await.map(|_| None)
    }
}

impl Stream for OutputStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => return Poll::Ready(Some(Ok(chunk))),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {}
        }
        // The transform's own result, unless a caller took it (a direct put, which
        // joins it itself): its error ends the stream, so that the caller can tell
        // what failed.
        if let Some(handle) = self.handle.as_mut() {
            let ended = std::task::ready!(Pin::new(handle).poll(cx));
            self.handle = None;
            self.outcome = None;
            return Poll::Ready(match ended {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => Some(Err(std::io::Error::other(EtlError::Transform(error)))),
                Err(error) => Some(Err(std::io::Error::other(abnormal(error)))),
            });
        }
        let Some(outcome) = self.outcome.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(outcome).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(succeeded) => {
                self.outcome = None;
                if succeeded == Ok(true) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(std::io::Error::other(
                        "the transform failed mid-stream",
                    ))))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Measure, Pace};

    #[test]
    fn pace_follows_the_recent_calls() {
        let pace = Pace::calls();
        assert!(!pace.is_long(), "no calls yet");
        for _ in 0..30 {
            pace.record(Duration::from_millis(2));
        }
        assert!(pace.is_long(), "after 2 ms calls");
        for _ in 0..30 {
            pace.record(Duration::from_micros(20));
        }
        assert!(!pace.is_long(), "after 20 µs calls");
        pace.record(Duration::from_millis(3));
        assert!(!pace.is_long(), "one slow call among fast ones");
    }

    #[test]
    fn a_stream_may_hold_its_thread_longer_than_a_call() {
        let (calls, polls) = (Pace::calls(), Pace::polls());
        for _ in 0..30 {
            calls.record(Duration::from_micros(1_200));
            polls.record(Duration::from_micros(1_200));
        }
        assert!(calls.is_long() && !polls.is_long());
        for _ in 0..30 {
            polls.record(Duration::from_millis(3));
        }
        assert!(polls.is_long());
    }

    #[test]
    fn a_streaming_call_is_judged_by_the_polls_most_of_its_time_went_to() {
        let held = |polls: &[(u32, Duration)]| {
            let mut measure = Measure::holding();
            for &(count, took) in polls {
                (0..count).for_each(|_| measure.add(took, Pace::polls().long));
            }
            measure.sample()
        };
        let short = Duration::from_micros(200);
        let preempted = Duration::from_micros(2_600);
        assert_eq!(held(&[(100, short), (1, preempted)]), short);
        let long = Duration::from_millis(5);
        let idle = Duration::from_micros(5);
        assert_eq!(held(&[(100, idle), (10, long)]), long);
        assert_eq!(held(&[]), Duration::ZERO);
    }
}
