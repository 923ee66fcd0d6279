// Classification losses on logits [B, K] with int32 labels [B]; all means over the batch.
import * as tf from '@tensorflow/tfjs-core';

function checkLabels(fn: string, logits: tf.Tensor, labels: tf.Tensor): void {
  if (logits.rank !== 2) throw new Error(`${fn}: logits must be [batch, classes], got shape [${logits.shape}]`);
  if (labels.dtype !== 'int32' || labels.rank !== 1 || labels.shape[0] !== logits.shape[0])
    throw new Error(`${fn}: labels must be int32 [${logits.shape[0]}], got ${labels.dtype} [${labels.shape}]`);
}

/**
 * mean over the batch of -log softmax(logits)[label]; logSoftmax subtracts the max, so large logits are safe.
 * One custom gradient instead of tfjs's chain through neg, mean, sum, mul and logSoftmax: the backward runs the
 * kernels that chain reduces to, in its order (so the same values), without its reshapes, casts and tape copies:
 * dlogits = g - sum(g, 1) * exp(logSoftmax), g = onehot * (-dy / batch).
 */
export function softmaxCrossEntropy(logits: tf.Tensor, labels: tf.Tensor): tf.Scalar {
  checkLabels('softmaxCrossEntropy', logits, labels);
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, oh] = args as tf.Tensor[];
    const ls = tf.logSoftmax(x);
    (args[2] as tf.GradSaveFunc)([ls, oh]);
    return {
      value: tf.neg(tf.mean(tf.sum(tf.mul(ls, oh), 1))),
      gradFunc: (dy: tf.Tensor, [sls, soh]: tf.Tensor[]) => {
        const g = tf.mul(soh, tf.div(tf.neg(dy), x.shape[0]!));
        return [tf.sub(g, tf.mul(tf.sum(g, 1, true), tf.exp(sls))), tf.zeros(soh.shape)];
      },
    };
  });
  return tf.tidy(() => f(logits, tf.cast(tf.oneHot(labels, logits.shape[1]!), logits.dtype)) as tf.Scalar);
}

/**
 * Hinton distillation: T^2 * mean over the batch of KL(softmax(teacher/T) || softmax(student/T))
 * (= torch's kl_div(log_softmax(s/T), softmax(t/T), reduction='batchmean') * T*T). The T^2 keeps the gradient
 * scale independent of T. tfjs has no stop-gradient: compute the teacher logits from tensors that are not trained.
 */
export function klDistillation(studentLogits: tf.Tensor, teacherLogits: tf.Tensor, temperature = 1): tf.Scalar {
  if (studentLogits.rank !== 2 || !studentLogits.shape.every((d, i) => d === teacherLogits.shape[i]))
    throw new Error(`klDistillation: student [${studentLogits.shape}] and teacher [${teacherLogits.shape}] logits must have the same [batch, classes] shape`);
  if (!(temperature > 0)) throw new Error(`klDistillation: temperature must be > 0, got ${temperature}`);
  return tf.tidy(() => {
    const logPt = tf.logSoftmax(tf.div(teacherLogits, temperature));
    const logPs = tf.logSoftmax(tf.div(studentLogits, temperature));
    const kl = tf.sum(tf.mul(tf.exp(logPt), tf.sub(logPt, logPs)), 1);
    return tf.mul(tf.mean(kl), temperature * temperature) as tf.Scalar;
  });
}

/** Number of rows whose argmax is the label. */
export function countCorrect(logits: tf.Tensor, labels: tf.Tensor): number {
  checkLabels('countCorrect', logits, labels);
  return tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), labels), 'int32')).dataSync()[0]!);
}

/** Fraction of rows whose argmax is the label. */
export function accuracy(logits: tf.Tensor, labels: tf.Tensor): number {
  return countCorrect(logits, labels) / Math.max(1, labels.shape[0]!);
}
