print "a TF 0.x era script"
import tensorflow as tf
loss = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z)
