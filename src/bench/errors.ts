// A matrix file that does not validate; the message names the file and the field.
import { QatError } from '../util/errors.js';

export class MatrixError extends QatError {
  constructor(message: string) {
    super(message, 'see bench/matrices/quick.json for a working example');
  }
}
